//! Orders: owners read and cancel their own, admins move them on; every
//! committed change leaves exactly one event, a refused one none.

use reqwest::Method;
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, User, id_of, send, spawn_app};

every_backend!(
    shoppers_see_only_their_own_orders,
    cancelling_puts_the_stock_back_once,
    racing_cancels_put_the_stock_back_once,
    admins_move_orders_through_their_states,
    customers_cannot_use_admin_order_routes,
);

/// `user` buys `quantity` of `product`: the order.
async fn buy(app: &TestApp, user: &User, product: Uuid, quantity: i64) -> serde_json::Value {
    app.put_item(user, product, quantity).await.expect(200);
    app.place_order(user).await
}

fn ids(page: &serde_json::Value) -> Vec<Uuid> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(id_of)
        .collect()
}

async fn shoppers_see_only_their_own_orders(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Scarf", 2_000, 10).await);
    let alice = app.customer().await;
    let bob = app.customer().await;
    let first = id_of(&buy(&app, &alice, product, 1).await);
    let second = id_of(&buy(&app, &alice, product, 2).await);
    let bobs = id_of(&buy(&app, &bob, product, 1).await);

    let mine = app.list_orders(&alice, "").await;
    mine.expect(200);
    assert_eq!(ids(&mine.body), vec![second, first], "newest first");
    assert!(mine.body["next_cursor"].is_null());
    let paged = app.list_orders(&alice, "limit=1").await;
    paged.expect(200);
    assert_eq!(ids(&paged.body), vec![second]);
    let cursor = paged.body["next_cursor"].as_str().unwrap().to_owned();
    let next = app
        .list_orders(&alice, &format!("limit=1&cursor={cursor}"))
        .await;
    next.expect(200);
    assert_eq!(ids(&next.body), vec![first]);

    app.get_order(&alice, first).await.expect(200);
    assert_eq!(
        app.get_order(&alice, second).await.body["items"][0]["quantity"],
        2
    );

    // Bob cannot see or cancel Alice's order: it does not exist for him.
    app.get_order(&bob, first)
        .await
        .expect_problem(404, "not_found");
    app.cancel_order(&bob, first)
        .await
        .expect_problem(404, "not_found");
    assert_eq!(ids(&app.list_orders(&bob, "").await.body), vec![bobs]);
    assert_eq!(
        app.get_order(&alice, first).await.body["status"],
        "placed",
        "Bob's attempt changed nothing"
    );
    app.get_order(&alice, Uuid::now_v7())
        .await
        .expect_problem(404, "not_found");
}

async fn cancelling_puts_the_stock_back_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Boots", 9_000, 10).await);
    let alice = app.customer().await;
    let order = id_of(&buy(&app, &alice, product, 3).await);
    assert_eq!(app.stock_of(product).await, 7);

    let cancelled = app.cancel_order(&alice, order).await;
    cancelled.expect(200);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(app.stock_of(product).await, 10, "the three boots are back");
    assert_eq!(
        app.get_order(&alice, order).await.body["status"],
        "cancelled"
    );

    app.cancel_order(&alice, order)
        .await
        .expect_problem(409, "invalid_transition");
    assert_eq!(app.stock_of(product).await, 10, "not put back twice");
    // An admin cannot move it on either.
    app.move_order(&app.admin, order, "paid")
        .await
        .expect_problem(409, "invalid_transition");

    assert_eq!(app.order_events(order, "order.placed").await, 1);
    assert_eq!(app.order_events(order, "order.cancelled").await, 1);
    assert_eq!(app.order_events(order, "order.paid").await, 0);
    assert_eq!(app.outbox_rows().await, 2);

    // A paid order can still be cancelled, by an admin too.
    let paid = id_of(&buy(&app, &alice, product, 4).await);
    app.move_order(&app.admin, paid, "paid").await.expect(200);
    assert_eq!(app.stock_of(product).await, 6);
    let by_admin = app.cancel_order(&app.admin, paid).await;
    by_admin.expect(200);
    assert_eq!(by_admin.body["status"], "cancelled");
    assert_eq!(app.stock_of(product).await, 10);
    assert_eq!(app.order_events(paid, "order.cancelled").await, 1);
}

async fn racing_cancels_put_the_stock_back_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Boots", 9_000, 10).await);
    let alice = app.customer().await;
    let order = id_of(&buy(&app, &alice, product, 3).await);

    // The shopper double-clicks, and an admin cancels at the same moment.
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let api = app.api.clone();
            let who = if i % 2 == 0 {
                alice.clone()
            } else {
                api.admin.clone()
            };
            tokio::spawn(async move { api.cancel_order(&who, order).await })
        })
        .collect();
    let mut cancelled = 0;
    for task in tasks {
        let reply = task.await.unwrap();
        if reply.status == 200 {
            cancelled += 1;
        } else {
            reply.expect_problem(409, "invalid_transition");
        }
    }

    assert_eq!(cancelled, 1, "one cancel wins");
    assert_eq!(app.stock_of(product).await, 10, "the stock came back once");
    assert_eq!(app.order_events(order, "order.cancelled").await, 1);
}

async fn admins_move_orders_through_their_states(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.admin.clone();
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Desk", 25_000, 10).await);
    let alice = app.customer().await;
    let order = id_of(&buy(&app, &alice, product, 1).await);

    let all = app.admin_orders(&admin, "").await;
    all.expect(200);
    assert!(
        ids(&all.body).contains(&order),
        "the admin sees every order"
    );

    for status in ["paid", "shipped"] {
        let moved = app.move_order(&admin, order, status).await;
        moved.expect(200);
        assert_eq!(moved.body["status"], status);
    }
    // A shipped order cannot be cancelled, by its owner or an admin.
    app.move_order(&admin, order, "cancelled")
        .await
        .expect_problem(409, "invalid_transition");
    app.cancel_order(&alice, order)
        .await
        .expect_problem(409, "invalid_transition");
    app.move_order(&admin, order, "delivered").await.expect(200);
    // Nothing moves a delivered order back.
    for status in ["paid", "placed", "shipped", "cancelled"] {
        app.move_order(&admin, order, status)
            .await
            .expect_problem(409, "invalid_transition");
    }
    let read = app.get_order(&alice, order).await;
    assert_eq!(read.body["status"], "delivered");
    assert_eq!(app.stock_of(product).await, 9, "stock stays sold");

    for (key, expected) in [
        ("order.placed", 1),
        ("order.paid", 1),
        ("order.shipped", 1),
        ("order.delivered", 1),
        ("order.cancelled", 0),
    ] {
        assert_eq!(app.order_events(order, key).await, expected, "{key}");
    }
    assert_eq!(app.outbox_rows().await, 4, "no event for a refused move");

    // Skipping a state is refused too.
    let other = id_of(&buy(&app, &alice, product, 1).await);
    app.move_order(&admin, other, "shipped")
        .await
        .expect_problem(409, "invalid_transition");
    app.move_order(&admin, other, "delivered")
        .await
        .expect_problem(409, "invalid_transition");
    app.move_order(&admin, Uuid::now_v7(), "paid")
        .await
        .expect_problem(404, "not_found");
    assert_eq!(app.order_events(other, "order.placed").await, 1);
    assert_eq!(app.outbox_rows().await, 5);
    // An admin's move to cancelled puts the stock back too.
    assert_eq!(app.stock_of(product).await, 8);
    let cancelled = app.move_order(&admin, other, "cancelled").await;
    cancelled.expect(200);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(app.stock_of(product).await, 9);
    assert_eq!(app.order_events(other, "order.cancelled").await, 1);
}

async fn customers_cannot_use_admin_order_routes(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Desk", 25_000, 10).await);
    let alice = app.customer().await;
    let order = id_of(&buy(&app, &alice, product, 1).await);

    app.admin_orders(&alice, "")
        .await
        .expect_problem(403, "forbidden");
    app.move_order(&alice, order, "paid")
        .await
        .expect_problem(403, "forbidden");
    app.admin_orders(&seller, "")
        .await
        .expect_problem(403, "forbidden");
    app.move_order(&seller, order, "shipped")
        .await
        .expect_problem(403, "forbidden");
    send(app.host(Method::GET, "/v1/admin/orders"))
        .await
        .expect_problem(401, "unauthorized");

    assert_eq!(app.get_order(&alice, order).await.body["status"], "placed");
    assert_eq!(app.outbox_rows().await, 1);
}
