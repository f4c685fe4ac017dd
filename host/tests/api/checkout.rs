//! Checkout: the cart becomes an order, or nothing at all is written.

use serde_json::json;

use crate::helpers::{Backend, id_of, spawn_app};

every_backend!(
    checkout_turns_the_cart_into_an_order,
    the_checkout_answer_is_the_stored_order,
    an_empty_cart_cannot_check_out,
    a_cart_short_of_stock_writes_nothing,
    a_changed_total_is_not_charged,
    a_cart_in_two_currencies_is_blocked,
);

async fn checkout_turns_the_cart_into_an_order(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let mug = id_of(&app.product(&seller, "Mug", 1_999, 5).await);
    let tea = id_of(&app.product(&seller, "Tea", 450, 100).await);
    let alice = app.customer().await;
    app.put_item(&alice, mug, 2).await.expect(200);
    app.put_item(&alice, tea, 3).await.expect(200);
    let shown = app.cart(&alice).await;
    shown.expect(200);

    let placed = app.checkout(&alice, Some("first-order"), None).await;

    placed.expect(201);
    let order = &placed.body;
    let order_id = placed.id();
    assert_eq!(
        placed.header("location").map(str::to_owned),
        Some(format!("/v1/orders/{order_id}"))
    );
    assert_eq!(placed.header("idempotent-replayed"), None);
    assert_eq!(order["status"], "placed");
    assert_eq!(order["user_id"], alice.id.to_string());
    assert_eq!(order["currency"], "USD");
    assert_eq!(order["subtotal"], 2 * 1_999 + 3 * 450);
    assert_eq!(order["discount_total"], 0);
    assert_eq!(order["total"], 2 * 1_999 + 3 * 450);
    assert_eq!(
        order["total"], shown.body["total"],
        "what was shown is charged"
    );
    let items = order["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    let line = |id: uuid::Uuid| {
        items
            .iter()
            .find(|i| i["product_id"] == id.to_string())
            .unwrap()
    };
    assert_eq!(line(mug)["quantity"], 2);
    assert_eq!(line(mug)["unit_price"], 1_999);
    assert_eq!(line(mug)["line_total"], 3_998);
    assert_eq!(line(mug)["name"], "Mug");
    assert_eq!(line(mug)["seller_id"], seller.id.to_string());
    assert_eq!(line(tea)["unit_price"], 450);
    assert_eq!(line(tea)["line_total"], 1_350);
    for member in ["adjustments", "plugins", "created_at", "updated_at"] {
        assert!(!order[member].is_null(), "order has {member}: {order}");
    }

    // The cart is empty, the stock taken, one order and one event written.
    let cart = app.cart(&alice).await;
    cart.expect(200);
    assert_eq!(cart.body["items"], json!([]));
    assert_eq!(cart.body["total"], 0);
    assert_eq!(app.stock_of(mug).await, 3);
    assert_eq!(app.stock_of(tea).await, 97);
    assert_eq!(app.order_rows().await, 1);
    assert_eq!(app.order_events(order_id, "order.placed").await, 1);

    // The event is a CloudEvents document carrying the order as answered.
    let events = app.order_event_documents(order_id, "order.placed").await;
    let event = &events[0];
    assert_eq!(event["specversion"], "1.0");
    assert_eq!(event["type"], "shopeezy.order.placed");
    assert_eq!(event["subject"], format!("orders/{order_id}"));
    assert!(event["id"].is_string() && event["source"].is_string() && event["time"].is_string());
    assert_eq!(&event["data"], order);

    // The order is there to read.
    let read = app.get_order(&alice, order_id).await;
    read.expect(200);
    assert_eq!(read.body["status"], "placed");
    assert_eq!(read.body["items"], order["items"]);
    assert_eq!(read.body["total"], order["total"]);
}

/// What checkout answers is what the order says when read back: a client
/// that keeps the 201 body holds the same order as `GET /v1/orders/{id}`.
async fn the_checkout_answer_is_the_stored_order(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let mug = id_of(&app.product(&seller, "Mug", 1_999, 5).await);
    let alice = app.customer().await;
    app.put_item(&alice, mug, 1).await.expect(200);

    let placed = app.checkout(&alice, Some("k1"), None).await;
    placed.expect(201);
    let read = app.get_order(&alice, placed.id()).await;
    read.expect(200);

    assert_eq!(read.body, placed.body);
}

async fn an_empty_cart_cannot_check_out(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.customer().await;

    app.checkout(&alice, Some("nothing"), None)
        .await
        .expect_problem(422, "cart_empty");

    assert_eq!(app.order_rows().await, 0);
    assert_eq!(app.outbox_rows().await, 0);
}

async fn a_cart_short_of_stock_writes_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let lamp = id_of(&app.product(&seller, "Lamp", 2_500, 5).await);
    let bulb = id_of(&app.product(&seller, "Bulb", 300, 50).await);
    let alice = app.customer().await;
    app.put_item(&alice, lamp, 4).await.expect(200);
    app.put_item(&alice, bulb, 4).await.expect(200);
    // The seller counts again: only two lamps are left.
    app.set_stock(&seller, lamp, 2).await.expect(200);

    let refused = app.checkout(&alice, Some("lamps"), None).await;

    refused.expect_problem(409, "out_of_stock");
    assert_eq!(
        refused.body["items"],
        json!([{"product_id": lamp, "requested": 4, "available": 2}]),
        "only the short line is named"
    );
    assert_eq!(app.order_rows().await, 0);
    assert_eq!(app.order_item_rows().await, 0);
    assert_eq!(app.outbox_rows().await, 0);
    assert_eq!(app.stock_of(lamp).await, 2);
    assert_eq!(app.stock_of(bulb).await, 50, "the other line took nothing");
    let mut lines = app.cart_lines(&alice).await;
    lines.sort();
    let mut expected = vec![(lamp, 4), (bulb, 4)];
    expected.sort();
    assert_eq!(lines, expected, "the cart is kept as it was");

    // With the quantity lowered the same shopper checks out.
    app.put_item(&alice, lamp, 2).await.expect(200);
    app.checkout(&alice, Some("lamps-2"), None)
        .await
        .expect(201);
    assert_eq!(app.stock_of(lamp).await, 0);
}

async fn a_changed_total_is_not_charged(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let chair = id_of(&app.product(&seller, "Chair", 10_000, 5).await);
    let alice = app.customer().await;
    let shown = app.put_item(&alice, chair, 1).await;
    shown.expect(200);
    assert_eq!(shown.body["total"], 10_000);
    // The price goes up while the shopper looks at the cart.
    app.patch_product(&seller, chair, json!({"price": 12_000}))
        .await
        .expect(200);

    let refused = app
        .checkout(
            &alice,
            Some("chair"),
            Some(json!({"expected_total": 10_000})),
        )
        .await;

    refused.expect_problem(409, "price_changed");
    assert_eq!(app.order_rows().await, 0);
    assert_eq!(app.outbox_rows().await, 0);
    assert_eq!(app.stock_of(chair).await, 5);
    assert_eq!(app.cart_lines(&alice).await, vec![(chair, 1)]);
}

async fn a_cart_in_two_currencies_is_blocked(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let pen = id_of(&app.product(&seller, "Pen", 250, 10).await);
    let pad = id_of(&app.product(&seller, "Notepad", 400, 10).await);
    let euro = app
        .create_product(
            &seller,
            json!({"sku": "EU-1", "name": "Euro pen", "price": 300, "currency": "EUR", "stock": 10}),
        )
        .await;
    euro.expect(201);
    let alice = app.customer().await;
    app.put_item(&alice, pen, 1).await.expect(200);
    app.put_item(&alice, pad, 1).await.expect(200);
    // A product in another currency cannot join the cart...
    app.put_item(&alice, euro.id(), 1)
        .await
        .expect_problem(409, "currency_mismatch");
    // ...but the seller may reprice one already in it.
    app.patch_product(&seller, pad, json!({"currency": "EUR"}))
        .await
        .expect(200);
    let cart = app.cart(&alice).await;
    cart.expect(200);
    assert_eq!(cart.body["violations"][0]["code"], "currency_mismatch");

    let blocked = app.checkout(&alice, Some("mixed"), None).await;

    blocked.expect_problem(422, "checkout_blocked");
    assert_eq!(blocked.body["violations"][0]["code"], "currency_mismatch");
    assert_eq!(app.order_rows().await, 0);
    assert_eq!(app.outbox_rows().await, 0);
    assert_eq!(app.stock_of(pen).await, 10);
    assert_eq!(app.stock_of(pad).await, 10);
}
