//! Group commit: many checkouts share one transaction, and each is still
//! answered on its own — a refused or failing order takes nothing and
//! writes nothing, and the others in its batch are placed.

use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{Backend, TestApp, User, assert_no_5xx, check_out_at_once, id_of, spawn_app};

every_backend!(
    pgbouncer:
    each_checkout_of_a_batch_is_answered_on_its_own,
    an_order_that_fails_in_the_database_fails_alone,
);

fn key() -> String {
    format!("batch-{}", Uuid::new_v4())
}

/// On PostgreSQL, how many transactions wrote the orders (rows written by
/// one transaction share its `xmin`).
async fn order_transactions(app: &TestApp) -> Option<i64> {
    if !app.db.is_postgres() {
        return None;
    }
    Some(
        app.count(
            "SELECT COUNT(DISTINCT xmin::text)::bigint FROM orders",
            None,
        )
        .await,
    )
}

async fn each_checkout_of_a_batch_is_answered_on_its_own(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let scarce = id_of(&app.product(&seller, "Scarce", 900, 5).await);
    let plenty = id_of(&app.product(&seller, "Plenty", 300, 100).await);
    let wanting_scarce = app.customers(20).await;
    let wanting_plenty = app.customers(16).await;
    // Four shoppers who already used their key for an earlier order, and
    // now send it again with another cart.
    let reusing = app.customers(4).await;
    let mut reused_keys = Vec::new();
    for user in &reusing {
        app.put_item(user, plenty, 1).await.expect(200);
        let k = key();
        app.checkout(user, Some(&k), None).await.expect(201);
        app.put_item(user, plenty, 2).await.expect(200);
        reused_keys.push(k);
    }
    for user in &wanting_scarce {
        app.put_item(user, scarce, 1).await.expect(200);
    }
    for user in &wanting_plenty {
        app.put_item(user, plenty, 1).await.expect(200);
    }
    let mut who: Vec<(User, String)> = Vec::new();
    // Interleaved, so every batch mixes orders that are placed and refused.
    for i in 0..20 {
        who.push((wanting_scarce[i].clone(), key()));
        if i < 16 {
            who.push((wanting_plenty[i].clone(), key()));
        }
        if i < 4 {
            who.push((reusing[i].clone(), reused_keys[i].clone()));
        }
    }

    let replies = check_out_at_once(&app, &who).await;

    assert_no_5xx(&replies);
    let mut scarce_placed = 0;
    for ((user, _), reply) in who.iter().zip(&replies) {
        if wanting_scarce.iter().any(|u| u.id == user.id) {
            if reply.status == 201 {
                scarce_placed += 1;
                assert_eq!(
                    app.cart_lines(user).await,
                    vec![],
                    "a placed order empties the cart"
                );
            } else {
                reply.expect_problem(409, "out_of_stock");
                assert_eq!(
                    app.cart_lines(user).await,
                    vec![(scarce, 1)],
                    "a refused checkout leaves the cart as it was"
                );
            }
        } else if wanting_plenty.iter().any(|u| u.id == user.id) {
            reply.expect(201);
            let order = app.get_order(user, reply.id()).await;
            order.expect(200);
            assert_eq!(order.body["items"][0]["product_id"], plenty.to_string());
        } else {
            reply.expect_problem(422, "idempotency_key_reused");
            assert_eq!(
                app.cart_lines(user).await,
                vec![(plenty, 2)],
                "nothing written"
            );
        }
    }
    assert_eq!(scarce_placed, 5, "exactly the stock is sold");
    assert_eq!(app.stock_of(scarce).await, 0);
    assert_eq!(app.stock_of(plenty).await, 100 - 16 - 4);
    let orders = 5 + 16 + 4;
    assert_eq!(app.order_rows().await, orders);
    assert_eq!(app.order_item_rows().await, orders);
    assert_eq!(app.outbox_rows_with_key("order.placed").await, orders);
    if let Some(transactions) = order_transactions(&app).await {
        // 21 orders placed at once (and 4 one by one before) did not take
        // 25 commits.
        assert!(
            transactions < orders,
            "orders placed at the same moment share commits ({transactions} transactions for {orders} orders)"
        );
    }
}

/// A trigger makes the database refuse one shopper's order; everyone who
/// checks out with them is placed.
async fn an_order_that_fails_in_the_database_fails_alone(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Anything", 500, 100).await);
    let shoppers = app.customers(24).await;
    for user in &shoppers {
        app.put_item(user, product, 1).await.expect(200);
    }
    let poisoned = &shoppers[11];
    poison_orders_of(&app, poisoned.id).await;
    let who: Vec<(User, String)> = shoppers.iter().map(|u| (u.clone(), key())).collect();

    let replies = check_out_at_once(&app, &who).await;

    for ((user, _), reply) in who.iter().zip(&replies) {
        if user.id == poisoned.id {
            assert_eq!(reply.status, 500, "{}", reply.body);
            assert_eq!(
                app.cart_lines(user).await,
                vec![(product, 1)],
                "nothing of the failed order is written"
            );
            let mine: Value = app.list_orders(user, "").await.body;
            assert_eq!(mine["items"].as_array().map(Vec::len), Some(0), "{mine}");
        } else {
            reply.expect(201);
        }
    }
    assert_eq!(app.stock_of(product).await, 100 - 23);
    assert_eq!(app.order_rows().await, 23);
    assert_eq!(app.outbox_rows_with_key("order.placed").await, 23);
}

/// Installs a trigger that refuses every order row of `user`.
async fn poison_orders_of(app: &TestApp, user: Uuid) {
    shopeezy_common::with_db!(&app.db, pool => {
        if app.db.is_postgres() {
            sqlx::query(&format!(
                "CREATE FUNCTION poison() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN IF NEW.user_id = '{user}' THEN RAISE EXCEPTION 'poisoned order'; END IF; RETURN NEW; END $$"
            ))
            .execute(pool)
            .await
            .unwrap();
            sqlx::query("CREATE TRIGGER poison BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION poison()")
                .execute(pool)
                .await
                .unwrap();
        } else if app.db.is_mysql() {
            sqlx::raw_sql(&format!(
                "CREATE TRIGGER poison BEFORE INSERT ON orders FOR EACH ROW
                 BEGIN IF NEW.user_id = UNHEX('{}') THEN
                   SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'poisoned order';
                 END IF; END",
                user.simple()
            ))
            .execute(pool)
            .await
            .unwrap();
        } else {
            sqlx::query(&format!(
                "CREATE TRIGGER poison BEFORE INSERT ON orders WHEN NEW.user_id = X'{}'
                 BEGIN SELECT RAISE(ABORT, 'poisoned order'); END",
                user.simple()
            ))
            .execute(pool)
            .await
            .unwrap();
        }
    });
}
