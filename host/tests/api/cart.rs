//! The cart: lines set (not added), removed, codes entered; one per shopper.

use std::sync::Arc;

use serde_json::json;
use tokio::sync::Barrier;

use crate::helpers::{Backend, Options, id_of, spawn_app, spawn_app_with};

every_backend!(
    pgbouncer:
    a_line_is_set_changed_and_removed,
    a_line_cannot_ask_for_more_than_the_stock,
    promotion_codes_are_entered_and_removed,
    every_shopper_has_a_cart_of_their_own,
    the_code_limit_holds_when_codes_arrive_at_once,
    a_cart_holds_a_bounded_number_of_lines,
);

async fn a_line_is_set_changed_and_removed(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let pen = id_of(&app.product(&seller, "Pen", 250, 100).await);
    let pad = id_of(&app.product(&seller, "Notepad", 400, 100).await);
    let alice = app.customer().await;

    let empty = app.cart(&alice).await;
    empty.expect(200);
    assert_eq!(empty.body["items"], json!([]));
    assert_eq!(empty.body["total"], 0);

    let cart = app.put_item(&alice, pen, 2).await;
    cart.expect(200);
    let line = &cart.body["items"][0];
    assert_eq!(line["product_id"], pen.to_string());
    assert_eq!(line["name"], "Pen");
    assert_eq!(
        line["sku"].as_str().map(|s| s.starts_with("sku-")),
        Some(true)
    );
    assert_eq!(line["seller_id"], seller.id.to_string());
    assert_eq!(line["quantity"], 2);
    assert_eq!(line["unit_price"], 250);
    assert_eq!(line["line_total"], 500);
    assert_eq!(cart.body["subtotal"], 500);
    assert_eq!(cart.body["total"], 500);
    assert_eq!(cart.body["currency"], "USD");
    assert_eq!(cart.body["violations"], json!([]));

    // Putting again sets the quantity; it does not add to it.
    let cart = app.put_item(&alice, pen, 5).await;
    cart.expect(200);
    assert_eq!(cart.body["items"][0]["quantity"], 5);
    assert_eq!(cart.body["total"], 1_250);
    app.put_item(&alice, pad, 1).await.expect(200);
    assert_eq!(app.cart(&alice).await.body["total"], 1_250 + 400);

    // Quantity 0 removes the line.
    let cart = app.put_item(&alice, pen, 0).await;
    cart.expect(200);
    assert_eq!(app.cart_lines(&alice).await, vec![(pad, 1)]);
    assert_eq!(cart.body["total"], 400);

    // DELETE removes a line; a line that is not there is 404.
    app.put_item(&alice, pen, 3).await.expect(200);
    let cart = app.remove_item(&alice, pad).await;
    cart.expect(200);
    assert_eq!(app.cart_lines(&alice).await, vec![(pen, 3)]);
    app.remove_item(&alice, pad)
        .await
        .expect_problem(404, "not_found");

    // DELETE /v1/cart empties it.
    app.put_item(&alice, pad, 2).await.expect(200);
    let cleared = app.clear_cart(&alice).await;
    cleared.expect(200);
    assert_eq!(cleared.body["items"], json!([]));
    assert_eq!(app.cart_lines(&alice).await, vec![]);
    // Nothing of this touched the stock.
    assert_eq!(app.stock_of(pen).await, 100);
    assert_eq!(app.stock_of(pad).await, 100);
}

async fn a_line_cannot_ask_for_more_than_the_stock(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let vase = id_of(&app.product(&seller, "Vase", 3_000, 3).await);
    let alice = app.customer().await;
    app.put_item(&alice, vase, 2).await.expect(200);

    let short = app.put_item(&alice, vase, 4).await;

    short.expect_problem(409, "insufficient_stock");
    assert_eq!(short.body["available"], 3);
    assert_eq!(
        app.cart_lines(&alice).await,
        vec![(vase, 2)],
        "the line is kept as it was"
    );
    app.put_item(&alice, vase, 3).await.expect(200);
    app.set_stock(&seller, vase, 0).await.expect(200);
    let gone = app.put_item(&alice, vase, 1).await;
    gone.expect_problem(409, "insufficient_stock");
    assert_eq!(gone.body["available"], 0);
}

async fn promotion_codes_are_entered_and_removed(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.customer().await;

    let cart = app.add_code(&alice, "save10").await;
    cart.expect(200);
    assert_eq!(
        cart.body["codes"],
        json!(["SAVE10"]),
        "codes are upper-cased"
    );
    // Entering it again keeps one.
    app.add_code(&alice, "SAVE10").await.expect(200);
    app.add_code(&alice, "freeship").await.expect(200);
    assert_eq!(
        app.cart(&alice).await.body["codes"],
        json!(["SAVE10", "FREESHIP"])
    );

    let cart = app.remove_code(&alice, "save10").await;
    cart.expect(200);
    assert_eq!(cart.body["codes"], json!(["FREESHIP"]));
    app.remove_code(&alice, "SAVE10")
        .await
        .expect_problem(404, "not_found");
    app.add_code(&alice, "no spaces")
        .await
        .expect_problem(422, "validation_failed");

    // A cart holds at most ten codes.
    for i in 0..9 {
        app.add_code(&alice, &format!("code-{i}")).await.expect(200);
    }
    app.add_code(&alice, "one-too-many")
        .await
        .expect_problem(409, "too_many_codes");
    assert_eq!(
        app.cart(&alice).await.body["codes"]
            .as_array()
            .unwrap()
            .len(),
        10
    );
    app.clear_cart(&alice).await.expect(200);
    assert_eq!(app.cart(&alice).await.body["codes"], json!([]));
}

async fn every_shopper_has_a_cart_of_their_own(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let pen = id_of(&app.product(&seller, "Pen", 250, 100).await);
    let pad = id_of(&app.product(&seller, "Notepad", 400, 100).await);
    let alice = app.customer().await;
    let bob = app.customer().await;

    app.put_item(&alice, pen, 2).await.expect(200);
    app.add_code(&alice, "alice-only").await.expect(200);
    app.put_item(&bob, pad, 7).await.expect(200);

    assert_eq!(app.cart_lines(&alice).await, vec![(pen, 2)]);
    assert_eq!(app.cart_lines(&bob).await, vec![(pad, 7)]);
    assert_eq!(app.cart(&bob).await.body["codes"], json!([]));
    // Bob's changes never reach Alice's cart.
    app.remove_item(&bob, pen)
        .await
        .expect_problem(404, "not_found");
    app.clear_cart(&bob).await.expect(200);
    assert_eq!(app.cart_lines(&alice).await, vec![(pen, 2)]);
    assert_eq!(app.cart(&alice).await.body["codes"], json!(["ALICE-ONLY"]));
}

/// A client firing fifty codes at once (say, to stack promotions) still ends
/// with at most ten in its cart. Tried a few times, since one burst may
/// happen to arrive in order.
async fn the_code_limit_holds_when_codes_arrive_at_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.customer().await;

    for round in 0..5 {
        app.clear_cart(&alice).await.expect(200);
        let start = Arc::new(Barrier::new(50));
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let api = app.api.clone();
                let alice = alice.clone();
                let start = start.clone();
                tokio::spawn(async move {
                    start.wait().await;
                    api.add_code(&alice, &format!("promo-{round}-{i}")).await
                })
            })
            .collect();
        let mut accepted = 0;
        for task in tasks {
            let reply = task.await.unwrap();
            if reply.status == 200 {
                accepted += 1;
            } else {
                reply.expect_problem(409, "too_many_codes");
            }
        }

        let codes = app.cart(&alice).await.body["codes"]
            .as_array()
            .unwrap()
            .len();
        assert!(codes <= 10, "round {round}: the cart holds {codes} codes");
        assert_eq!(accepted, codes, "every accepted code is in the cart");
    }
}

fn five_lines(config: &mut shopeezy_host::Config) {
    config.cart_max_lines = 5;
}

/// Pricing a cart (its plugins included) grows with its lines, so a cart
/// holds a bounded number: past it, a new product is 409 `cart_full`; a
/// line already there can still change.
async fn a_cart_holds_a_bounded_number_of_lines(backend: Backend) {
    let options = Options {
        configure_host: Some(five_lines),
        ..Options::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    let seller = app.seller().await;
    let shopper = app.customer().await;
    let mut products = Vec::new();
    for i in 0..6 {
        products.push(id_of(
            &app.product(&seller, &format!("Item {i}"), 100, 10).await,
        ));
    }
    for p in &products[..5] {
        app.put_item(&shopper, *p, 1).await.expect(200);
    }
    app.put_item(&shopper, products[5], 1)
        .await
        .expect_problem(409, "cart_full");
    app.put_item(&shopper, products[0], 3).await.expect(200);
    assert_eq!(app.cart_lines(&shopper).await.len(), 5);
    app.remove_item(&shopper, products[1]).await.expect(200);
    app.put_item(&shopper, products[5], 1).await.expect(200);
}
