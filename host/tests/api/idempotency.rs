//! A retried checkout never makes a second order: the `Idempotency-Key`.

use serde_json::json;

use crate::helpers::{Backend, Reply, id_of, spawn_app};

every_backend!(
    pgbouncer:
    twenty_racing_retries_make_one_order,
    retries_racing_on_two_replicas_make_one_order,
    a_key_reused_for_a_different_cart_is_refused_and_writes_nothing,
    checkout_without_a_key_is_refused,
    keys_belong_to_their_user,
    a_failed_checkout_does_not_use_up_its_key,
);

async fn twenty_racing_retries_make_one_order(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Kettle", 3_500, 10).await);
    let alice = app.customer().await;
    app.put_item(&alice, product, 2).await.expect(200);

    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let api = app.api.clone();
            let alice = alice.clone();
            tokio::spawn(async move { api.checkout(&alice, Some("retry-me"), None).await })
        })
        .collect();
    let mut replies: Vec<Reply> = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }

    for reply in &replies {
        reply.expect(201);
    }
    let first = &replies[0].body;
    for reply in &replies {
        assert_eq!(&reply.body, first, "every answer is the same order");
        assert_eq!(
            reply.header("location").map(str::to_owned),
            Some(format!("/v1/orders/{}", id_of(first)))
        );
    }
    let replayed = replies
        .iter()
        .filter(|r| r.header("idempotent-replayed") == Some("true"))
        .count();
    assert_eq!(replayed, 19, "all but the first are replays");
    assert_eq!(app.order_rows().await, 1);
    assert_eq!(app.outbox_rows_with_key("order.placed").await, 1);
    assert_eq!(app.stock_of(product).await, 8, "the stock was taken once");

    // A retry much later is still answered with the same order.
    let later = app.checkout(&alice, Some("retry-me"), None).await;
    later.expect(201);
    assert_eq!(&later.body, first);
    assert_eq!(later.header("idempotent-replayed"), Some("true"));
    assert_eq!(app.order_rows().await, 1);
}

/// Behind a load balancer the retries of one checkout land on different
/// replicas, which share nothing but the database.
async fn retries_racing_on_two_replicas_make_one_order(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let replica = app.replica().await;
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Kettle", 3_500, 10).await);
    let alice = app.customer().await;
    app.put_item(&alice, product, 2).await.expect(200);

    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let api = if i % 2 == 0 {
                app.api.clone()
            } else {
                replica.api.clone()
            };
            let alice = alice.clone();
            tokio::spawn(async move { api.checkout(&alice, Some("lb-retry"), None).await })
        })
        .collect();
    let mut replies: Vec<Reply> = Vec::new();
    for task in tasks {
        replies.push(task.await.unwrap());
    }

    for reply in &replies {
        reply.expect(201);
        assert_eq!(
            reply.body, replies[0].body,
            "every answer is the same order"
        );
    }
    let replayed = replies
        .iter()
        .filter(|r| r.header("idempotent-replayed") == Some("true"))
        .count();
    assert_eq!(replayed, 19);
    assert_eq!(app.order_rows().await, 1);
    assert_eq!(app.outbox_rows_with_key("order.placed").await, 1);
    assert_eq!(app.stock_of(product).await, 8);
}

async fn a_key_reused_for_a_different_cart_is_refused_and_writes_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let kettle = id_of(&app.product(&seller, "Kettle", 3_500, 10).await);
    let toaster = id_of(&app.product(&seller, "Toaster", 4_200, 10).await);
    let alice = app.customer().await;
    app.put_item(&alice, kettle, 1).await.expect(200);
    let order = app.checkout(&alice, Some("weekly-shop"), None).await;
    order.expect(201);

    // Next week, a new cart, but the client reuses the key by mistake.
    app.put_item(&alice, toaster, 1).await.expect(200);
    let reused = app.checkout(&alice, Some("weekly-shop"), None).await;
    reused.expect_problem(422, "idempotency_key_reused");

    assert_eq!(app.order_rows().await, 1, "no second order");
    assert_eq!(app.outbox_rows().await, 1, "no second event");
    assert_eq!(app.stock_of(toaster).await, 10, "no stock taken");
    assert_eq!(
        app.cart_lines(&alice).await,
        vec![(toaster, 1)],
        "the cart is kept"
    );

    // The same key with a different body is refused too.
    let other_body = app
        .checkout(
            &alice,
            Some("weekly-shop"),
            Some(json!({"expected_total": 1})),
        )
        .await;
    other_body.expect_problem(422, "idempotency_key_reused");

    // With a new key the new cart checks out.
    let second = app.checkout(&alice, Some("weekly-shop-2"), None).await;
    second.expect(201);
    assert_ne!(second.id(), order.id());
    assert_eq!(app.order_rows().await, 2);
}

async fn checkout_without_a_key_is_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Kettle", 3_500, 10).await);
    let alice = app.customer().await;
    app.put_item(&alice, product, 1).await.expect(200);

    app.checkout(&alice, None, None)
        .await
        .expect_problem(400, "idempotency_key_required");
    app.checkout(&alice, Some(""), None)
        .await
        .expect_problem(400, "idempotency_key_required");
    let too_long = "k".repeat(256);
    app.checkout(&alice, Some(&too_long), None)
        .await
        .expect_problem(400, "idempotency_key_required");

    assert_eq!(app.order_rows().await, 0);
    assert_eq!(app.stock_of(product).await, 10);
    assert_eq!(app.cart_lines(&alice).await, vec![(product, 1)]);
}

async fn keys_belong_to_their_user(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Kettle", 3_500, 10).await);
    let alice = app.customer().await;
    let bob = app.customer().await;
    app.put_item(&alice, product, 1).await.expect(200);
    app.put_item(&bob, product, 3).await.expect(200);

    let alices = app.checkout(&alice, Some("order-1"), None).await;
    alices.expect(201);
    let bobs = app.checkout(&bob, Some("order-1"), None).await;
    bobs.expect(201);

    assert_eq!(bobs.header("idempotent-replayed"), None, "not a replay");
    assert_ne!(bobs.id(), alices.id());
    assert_eq!(bobs.body["user_id"], bob.id.to_string());
    assert_eq!(bobs.body["items"][0]["quantity"], 3);
    assert_eq!(app.order_rows().await, 2);
    assert_eq!(app.stock_of(product).await, 6);
}

async fn a_failed_checkout_does_not_use_up_its_key(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Kettle", 3_500, 10).await);
    let alice = app.customer().await;
    app.put_item(&alice, product, 2).await.expect(200);

    // The shopper saw an old price; the checkout is refused, nothing written.
    app.checkout(
        &alice,
        Some("pay-now"),
        Some(json!({"expected_total": 6_000})),
    )
    .await
    .expect_problem(409, "price_changed");
    assert_eq!(app.order_rows().await, 0);

    // The same key with the right total goes through.
    let placed = app
        .checkout(
            &alice,
            Some("pay-now"),
            Some(json!({"expected_total": 7_000})),
        )
        .await;
    placed.expect(201);
    assert_eq!(placed.header("idempotent-replayed"), None);
    assert_eq!(placed.body["total"], 7_000);
    assert_eq!(app.order_rows().await, 1);
}
