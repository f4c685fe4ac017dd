//! Who may call: every token is checked by the account service, a revoked
//! one is refused at once, and when tokens cannot be checked nothing is let
//! through.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::helpers::{Backend, Options, eventually, id_of, send, spawn_app, spawn_app_with};

both_backends!(
    requests_without_a_valid_token_are_refused,
    a_revoked_token_is_refused_on_the_very_next_request,
    a_role_change_is_in_force_at_once,
    requests_fail_closed_while_the_account_service_is_unreachable,
);

async fn requests_without_a_valid_token_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let routes = [
        (Method::GET, "/v1/cart"),
        (Method::DELETE, "/v1/cart"),
        (Method::POST, "/v1/checkout"),
        (Method::GET, "/v1/orders"),
        (Method::POST, "/v1/products"),
        (Method::GET, "/v1/admin/orders"),
    ];
    for (method, path) in routes {
        for token in [
            None,
            Some("not-a-jwt"),
            Some("eyJhbGciOiJFZERTQSJ9.e30.c2ln"),
        ] {
            let mut request = app
                .host(method.clone(), path)
                .header("Idempotency-Key", "k")
                .json(&json!({}));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let reply = send(request).await;
            reply.expect_problem(401, "unauthorized");
            assert_eq!(
                reply.header("www-authenticate"),
                Some("Bearer"),
                "{method} {path}"
            );
        }
    }
    // A scheme other than Bearer is no token either.
    let basic = send(
        app.host(Method::GET, "/v1/cart")
            .header("Authorization", "Basic dXNlcjpwYXNz"),
    )
    .await;
    basic.expect_problem(401, "unauthorized");
    assert_eq!(app.product_rows().await, 0);
    assert_eq!(app.order_rows().await, 0);
}

async fn a_revoked_token_is_refused_on_the_very_next_request(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Lamp", 2_500, 5).await);
    let alice = app.customer().await;
    app.put_item(&alice, product, 1).await.expect(200);

    app.logout(&alice).await.expect(204);

    app.cart(&alice).await.expect_problem(401, "unauthorized");
    app.checkout(&alice, Some("after-logout"), None)
        .await
        .expect_problem(401, "unauthorized");
    assert_eq!(app.order_rows().await, 0);
    // The seller's own token is unaffected.
    app.set_stock(&seller, product, 6).await.expect(200);
}

async fn a_role_change_is_in_force_at_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Lamp", 2_500, 5).await);

    // The admin takes the seller role away; the same token loses it at once.
    send(
        app.client
            .patch(format!("{}/v1/admin/users/{}", app.account_url, seller.id))
            .bearer_auth(&app.admin.token)
            .json(&json!({"role": "customer"})),
    )
    .await
    .expect(200);

    app.set_stock(&seller, product, 0)
        .await
        .expect_problem(403, "forbidden");
    app.create_product(
        &seller,
        json!({"sku": "late", "name": "Too late", "price": 1, "currency": "USD"}),
    )
    .await
    .expect_problem(403, "forbidden");
    assert_eq!(app.stock_of(product).await, 5);
    assert_eq!(app.product_rows().await, 1);
    // As a customer it can still shop.
    app.put_item(&seller, product, 1).await.expect(200);
}

async fn requests_fail_closed_while_the_account_service_is_unreachable(backend: Backend) {
    let options = Options {
        auth_through_proxy: true,
        ..Options::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    let proxy = app.auth_proxy.clone().unwrap();
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Lamp", 2_500, 5).await);
    let alice = app.customer().await;
    app.put_item(&alice, product, 1).await.expect(200);

    proxy.cut();

    let cart = app.cart(&alice).await;
    cart.expect_problem(503, "auth_unavailable");
    let checkout = app.checkout(&alice, Some("while-down"), None).await;
    checkout.expect_problem(503, "auth_unavailable");
    app.set_stock(&seller, product, 0)
        .await
        .expect_problem(503, "auth_unavailable");
    let ready = send(app.host(Method::GET, "/readyz")).await;
    ready.expect(503);
    assert_eq!(ready.body["checks"]["auth"]["status"], "unavailable");
    // Reading the public catalog needs no token and still works.
    assert_eq!(app.stock_of(product).await, 5);
    assert_eq!(app.order_rows().await, 0);

    // Back again: the same token works without a restart.
    proxy.restore();
    let recovered = eventually(Duration::from_secs(15), || async {
        app.cart(&alice).await.status == 200
    })
    .await;
    assert!(recovered, "the host reconnects to the account service");
    app.checkout(&alice, Some("after-recovery"), None)
        .await
        .expect(201);
}
