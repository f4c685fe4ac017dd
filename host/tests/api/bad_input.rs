//! Bad input is always a 4xx problem with a `code`, never a 5xx and never a
//! partial change.

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, User, id_of, json_body, send, send_oversized, spawn_app};

every_backend!(
    absurd_quantities_leave_the_cart_alone,
    unknown_and_malformed_ids_are_refused,
    malformed_bodies_are_refused,
    oversized_bodies_are_refused,
    an_oversized_checkout_body_is_refused_as_a_problem,
    invalid_products_are_not_created,
    bad_list_queries_are_refused,
);

/// Two megabytes of JSON.
fn two_mebibytes() -> String {
    format!("{{\"description\": \"{}\"}}", "x".repeat(2 << 20))
}

async fn cart_json(app: &TestApp, user: &User) -> Value {
    let cart = app.cart(user).await;
    cart.expect(200);
    cart.body
}

async fn absurd_quantities_leave_the_cart_alone(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Pen", 250, 1_000_000).await);
    let alice = app.customer().await;
    app.put_item(&alice, product, 1).await.expect(200);
    let before = cart_json(&app, &alice).await;

    let path = format!("/v1/cart/items/{product}");
    for raw in [
        "-1",
        "10001",
        "2147483648",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775809",
        "1e3",
        "1.5",
        "\"2\"",
        "null",
        "true",
    ] {
        let body = format!("{{\"quantity\": {raw}}}");
        let reply = send(json_body(app.host_as(&alice, Method::PUT, &path), body)).await;
        reply.expect_client_error();
        assert!(
            [400, 422].contains(&reply.status.as_u16()),
            "quantity {raw}: {} {}",
            reply.status,
            reply.body
        );
        assert_eq!(cart_json(&app, &alice).await, before, "quantity {raw}");
    }
    // Well-formed but out of range: the field is named.
    let reply = app.put_item(&alice, product, 10_001).await;
    reply.expect_problem(422, "validation_failed");
    assert_eq!(reply.body["field"], "quantity");
    let reply = app.put_item(&alice, product, -1).await;
    reply.expect_problem(422, "validation_failed");
    // A missing quantity.
    send(json_body(app.host_as(&alice, Method::PUT, &path), "{}"))
        .await
        .expect_problem(422, "invalid_body");
    assert_eq!(cart_json(&app, &alice).await, before);
    assert_eq!(app.stock_of(product).await, 1_000_000);
}

async fn unknown_and_malformed_ids_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let alice = app.customer().await;
    let unknown = Uuid::new_v4();

    app.put_item(&alice, unknown, 1)
        .await
        .expect_problem(404, "not_found");
    app.get_product(unknown)
        .await
        .expect_problem(404, "not_found");
    app.get_order(&alice, unknown)
        .await
        .expect_problem(404, "not_found");
    app.patch_product(&seller, unknown, json!({"price": 1}))
        .await
        .expect_problem(404, "not_found");
    app.set_stock(&seller, unknown, 1)
        .await
        .expect_problem(404, "not_found");
    app.cancel_order(&alice, unknown)
        .await
        .expect_problem(404, "not_found");
    assert_eq!(app.cart_lines(&alice).await, vec![]);

    for (method, path) in [
        (Method::GET, "/v1/products/not-a-uuid"),
        (Method::PUT, "/v1/cart/items/not-a-uuid"),
        (Method::DELETE, "/v1/cart/items/123"),
        (Method::GET, "/v1/orders/%27%20OR%201=1"),
        (Method::POST, "/v1/orders/not-a-uuid/cancel"),
        (Method::PATCH, "/v1/products/not-a-uuid"),
    ] {
        let reply = send(
            app.host_as(&seller, method.clone(), path)
                .json(&json!({"quantity": 1, "price": 1})),
        )
        .await;
        reply.expect_problem(400, "invalid_path");
    }
    // An unknown route is a problem too.
    send(app.host(Method::GET, "/v1/nowhere"))
        .await
        .expect_problem(404, "not_found");
}

async fn malformed_bodies_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Pen", 250, 100).await);
    let alice = app.customer().await;
    app.put_item(&alice, product, 1).await.expect(200);
    let before = cart_json(&app, &alice).await;
    let item = format!("/v1/cart/items/{product}");

    // Broken before any member is named, so no endpoint can read a field.
    for body in ["{", "not json", "{'quantity': 1}", "{,}", "[}"] {
        send(json_body(app.host_as(&alice, Method::PUT, &item), body))
            .await
            .expect_problem(400, "malformed_json");
        send(json_body(
            app.host_as(&seller, Method::POST, "/v1/products"),
            body,
        ))
        .await
        .expect_problem(400, "malformed_json");
        send(json_body(
            app.host_as(&alice, Method::POST, "/v1/checkout")
                .header("Idempotency-Key", "malformed"),
            body,
        ))
        .await
        .expect_problem(400, "malformed_json");
    }

    // An upload that is not multipart is a problem too, not plain text.
    for body in ["{}", "component"] {
        send(json_body(
            app.host_as(&seller, Method::POST, "/v1/plugins"),
            body,
        ))
        .await
        .expect_problem(400, "invalid_body");
    }

    // Unknown fields are refused, not ignored.
    app.put_item(&alice, product, 1).await.expect(200);
    let reply = send(
        app.host_as(&alice, Method::PUT, &item)
            .json(&json!({"quantity": 3, "unit_price": 1})),
    )
    .await;
    reply.expect_problem(422, "invalid_body");
    app.create_product(
        &seller,
        json!({"sku": "x", "name": "x", "price": 1, "currency": "USD", "discount": 5}),
    )
    .await
    .expect_problem(422, "invalid_body");
    app.patch_product(&seller, product, json!({"price": 1, "stock": 0}))
        .await
        .expect_problem(422, "invalid_body");
    app.checkout(&alice, Some("unknown-field"), Some(json!({"total": 0})))
        .await
        .expect_problem(422, "invalid_body");
    // Wrong types.
    app.create_product(
        &seller,
        json!({"sku": "x", "name": "x", "price": "1", "currency": "USD"}),
    )
    .await
    .expect_problem(422, "invalid_body");
    app.checkout(
        &alice,
        Some("wrong-type"),
        Some(json!({"expected_total": "250"})),
    )
    .await
    .expect_problem(422, "invalid_body");
    // A JSON body without its media type.
    send(
        app.host_as(&alice, Method::PUT, &item)
            .body("{\"quantity\": 2}"),
    )
    .await
    .expect_problem(415, "unsupported_media_type");

    assert_eq!(cart_json(&app, &alice).await, before);
    assert_eq!(app.product_rows().await, 1);
    assert_eq!(app.order_rows().await, 0);
    let read = app.get_product(product).await;
    assert_eq!(read.body["price"], 250);
    assert_eq!(read.body["stock"], 100);
}

async fn oversized_bodies_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Pen", 250, 100).await);
    let alice = app.customer().await;
    app.put_item(&alice, product, 1).await.expect(200);
    let before = cart_json(&app, &alice).await;

    let requests = [
        app.host_as(&seller, Method::POST, "/v1/products"),
        app.host_as(&seller, Method::PATCH, &format!("/v1/products/{product}")),
        app.host_as(&alice, Method::PUT, &format!("/v1/cart/items/{product}")),
    ];
    for request in requests {
        send_oversized(json_body(request, two_mebibytes()))
            .await
            .expect_problem(413, "body_too_large");
    }

    assert_eq!(cart_json(&app, &alice).await, before);
    assert_eq!(app.product_rows().await, 1);
    assert_eq!(app.order_rows().await, 0);
    assert_eq!(app.get_product(product).await.body["description"], "");
}

/// Checkout reads its optional body itself; an oversized one must still be
/// answered like every other endpoint's: a 413 problem, nothing written.
async fn an_oversized_checkout_body_is_refused_as_a_problem(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Pen", 250, 100).await);
    let alice = app.customer().await;
    app.put_item(&alice, product, 1).await.expect(200);

    let reply = send_oversized(json_body(
        app.host_as(&alice, Method::POST, "/v1/checkout")
            .header("Idempotency-Key", "huge"),
        two_mebibytes(),
    ))
    .await;

    assert_eq!(app.order_rows().await, 0);
    assert_eq!(app.cart_lines(&alice).await, vec![(product, 1)]);
    reply.expect_problem(413, "body_too_large");
}

async fn invalid_products_are_not_created(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let valid =
        json!({"sku": "OK-1", "name": "Valid", "price": 100, "currency": "USD", "stock": 1});
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };

    for (body, field) in [
        (with("price", json!(-1)), "price"),
        (with("price", json!(100_000_000_001_i64)), "price"),
        (with("stock", json!(-5)), "stock"),
        (with("stock", json!(1_000_000_001)), "stock"),
        (with("currency", json!("usd")), "currency"),
        (with("currency", json!("US")), "currency"),
        (with("currency", json!("DOLLARS")), "currency"),
        (with("name", json!("")), "name"),
        (with("name", json!("   ")), "name"),
        (with("name", json!("x".repeat(201))), "name"),
        (with("name", json!("bell\u{7}")), "name"),
        (with("sku", json!("")), "sku"),
        (with("sku", json!("has space")), "sku"),
        (with("tags", json!(["no spaces"])), "tags"),
        (with("attributes", json!({"Bad Key": "v"})), "attributes"),
    ] {
        let reply = app.create_product(&seller, body.clone()).await;
        reply.expect_problem(422, "validation_failed");
        assert_eq!(reply.body["field"], field, "{body}");
    }
    assert_eq!(app.product_rows().await, 0, "no product was created");
    assert!(app.listed_ids("").await.is_empty());

    // The same rules hold for a change, which then changes nothing.
    let product = app.create_product(&seller, valid).await;
    product.expect(201);
    let id = product.id();
    for body in [
        json!({"price": -1}),
        json!({"currency": "usd"}),
        json!({"name": ""}),
        json!({"name": "Renamed", "price": -1}),
    ] {
        app.patch_product(&seller, id, body)
            .await
            .expect_problem(422, "validation_failed");
    }
    app.set_stock(&seller, id, -1)
        .await
        .expect_problem(422, "validation_failed");
    let read = app.get_product(id).await;
    assert_eq!(read.body["name"], "Valid");
    assert_eq!(read.body["price"], 100);
    assert_eq!(read.body["currency"], "USD");
    assert_eq!(read.body["stock"], 1);
}

async fn bad_list_queries_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let alice = app.customer().await;

    for query in [
        "limit=1000",
        "limit=101",
        "limit=0",
        "limit=-1",
        "limit=ten",
        "cursor=not-a-cursor",
        "seller_id=not-a-uuid",
        "colour=red",
    ] {
        let reply = app.list_products(query).await;
        reply.expect(400);
        reply.expect_client_error();
        assert!(
            ["invalid_query", "invalid_cursor"].contains(&reply.code()),
            "{query}: {}",
            reply.body
        );
    }
    let long = "q".repeat(101);
    app.list_products(&format!("q={long}"))
        .await
        .expect_problem(422, "validation_failed");
    for query in ["limit=1000", "cursor=%%%"] {
        app.list_orders(&alice, query).await.expect_client_error();
        app.admin_orders(&app.admin, query)
            .await
            .expect_client_error();
    }
    app.list_products("limit=100").await.expect(200);
}
