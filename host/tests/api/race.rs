//! Many shoppers, little stock: checkout never oversells, never deadlocks and
//! never answers 5xx, on every backend.

use futures::StreamExt;
use uuid::Uuid;

use crate::helpers::{
    Api, Backend, Reply, User, assert_no_5xx, check_out_all_at_once, id_of, spawn_app,
};

every_backend!(
    pgbouncer:
    two_hundred_shoppers_race_for_fifty_units,
    carts_filled_in_opposite_orders_never_deadlock,
    stock_is_conserved_while_orders_are_cancelled,
    two_replicas_never_oversell,
    a_line_put_while_its_cart_checks_out_is_ordered_or_kept,
);

/// Puts each user's lines in its cart, 32 users at a time; every put must succeed.
async fn fill_carts(api: &Api, carts: Vec<(User, Vec<Uuid>)>) {
    let replies: Vec<Reply> = futures::stream::iter(carts)
        .map(|(user, products)| async move {
            let mut last = None;
            for product in products {
                last = Some(api.put_item(&user, product, 1).await);
                if last.as_ref().is_some_and(|r| r.status != 200) {
                    break;
                }
            }
            last.unwrap()
        })
        .buffer_unordered(32)
        .collect()
        .await;
    for reply in &replies {
        reply.expect(200);
    }
}

fn with_status(replies: &[Reply], status: u16) -> Vec<&Reply> {
    replies.iter().filter(|r| r.status == status).collect()
}

async fn two_hundred_shoppers_race_for_fifty_units(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Limited sneaker", 12_000, 50).await);
    let shoppers = app.customers(200).await;
    fill_carts(
        &app,
        shoppers
            .iter()
            .map(|u| (u.clone(), vec![product]))
            .collect(),
    )
    .await;

    let replies = check_out_all_at_once(&app, &shoppers).await;

    assert_no_5xx(&replies);
    let placed = with_status(&replies, 201);
    let refused = with_status(&replies, 409);
    assert_eq!(placed.len(), 50, "exactly the stock is sold");
    assert_eq!(refused.len(), 150, "everyone else is told it is gone");
    for reply in &refused {
        reply.expect_problem(409, "out_of_stock");
        let item = &reply.body["items"][0];
        assert_eq!(item["product_id"], product.to_string(), "{}", reply.body);
        assert_eq!(item["requested"], 1, "{}", reply.body);
        assert!(item["available"].is_i64(), "{}", reply.body);
    }
    for reply in &placed {
        assert_eq!(reply.body["status"], "placed");
        assert_eq!(reply.body["items"][0]["quantity"], 1);
    }
    let mut order_ids: Vec<Uuid> = placed.iter().map(|r| r.id()).collect();
    order_ids.sort();
    order_ids.dedup();
    assert_eq!(order_ids.len(), 50, "fifty distinct orders");

    assert_eq!(app.stock_of(product).await, 0);
    assert_eq!(app.order_rows().await, 50);
    assert_eq!(app.order_item_rows().await, 50);
    assert_eq!(app.outbox_rows_with_key("order.placed").await, 50);
    assert_eq!(app.outbox_rows().await, 50, "no other event was written");
}

async fn carts_filled_in_opposite_orders_never_deadlock(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let a = id_of(&app.product(&seller, "Product A", 500, 30).await);
    let b = id_of(&app.product(&seller, "Product B", 700, 30).await);
    let shoppers = app.customers(100).await;
    let carts = shoppers
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let order = if i % 2 == 0 { vec![a, b] } else { vec![b, a] };
            (u.clone(), order)
        })
        .collect();
    fill_carts(&app, carts).await;

    let replies = check_out_all_at_once(&app, &shoppers).await;

    assert_no_5xx(&replies);
    assert_eq!(with_status(&replies, 201).len(), 30, "one order per unit");
    assert_eq!(with_status(&replies, 409).len(), 70);
    for reply in with_status(&replies, 409) {
        reply.expect_problem(409, "out_of_stock");
    }
    for reply in with_status(&replies, 201) {
        assert_eq!(reply.body["items"].as_array().unwrap().len(), 2);
        assert_eq!(reply.body["total"], 1200);
    }
    assert_eq!(app.stock_of(a).await, 0);
    assert_eq!(app.stock_of(b).await, 0);
    assert_eq!(app.order_rows().await, 30);
    assert_eq!(app.order_item_rows().await, 60);
    assert_eq!(app.outbox_rows_with_key("order.placed").await, 30);
}

/// Cancellations put stock back while new checkouts take it: no unit is lost
/// or made up, and nobody sees a 5xx.
async fn stock_is_conserved_while_orders_are_cancelled(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Concert ticket", 8_000, 40).await);
    let early = app.customers(20).await;
    let late = app.customers(40).await;
    // The late shoppers fill their carts while there is stock for all...
    fill_carts(
        &app,
        late.iter().map(|u| (u.clone(), vec![product])).collect(),
    )
    .await;
    // ...then the early ones buy half of it.
    let mut orders = Vec::new();
    for user in &early {
        app.put_item(user, product, 1).await.expect(200);
        orders.push(id_of(&app.place_order(user).await));
    }
    assert_eq!(app.stock_of(product).await, 20);

    // The early buyers all cancel while the late ones all check out.
    let cancels: Vec<_> = early
        .iter()
        .zip(&orders)
        .map(|(user, order)| {
            let api = app.api.clone();
            let (user, order) = (user.clone(), *order);
            tokio::spawn(async move { api.cancel_order(&user, order).await })
        })
        .collect();
    let checkouts = check_out_all_at_once(&app, &late).await;
    let mut cancelled = Vec::new();
    for task in cancels {
        cancelled.push(task.await.unwrap());
    }

    assert_no_5xx(&checkouts);
    assert_no_5xx(&cancelled);
    for reply in &cancelled {
        reply.expect(200);
    }
    let placed = with_status(&checkouts, 201).len() as i64;
    for reply in checkouts.iter().filter(|r| r.status != 201) {
        reply.expect_problem(409, "out_of_stock");
    }
    assert!(
        placed >= 20,
        "at least the stock left before the cancels sold"
    );
    assert_eq!(
        app.stock_of(product).await,
        40 - placed,
        "every unit is either in stock or in a live order"
    );
    assert_eq!(app.outbox_rows_with_key("order.cancelled").await, 20);
    assert_eq!(app.outbox_rows_with_key("order.placed").await, 20 + placed);
}

/// Two host processes on one database: the in-process queue cannot order
/// them, the database must.
async fn two_replicas_never_oversell(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let replica = app.replica().await;
    let seller = app.seller().await;
    let a = id_of(&app.product(&seller, "Product A", 500, 30).await);
    let b = id_of(&app.product(&seller, "Product B", 700, 30).await);
    let shoppers = app.customers(100).await;
    let carts = shoppers
        .iter()
        .enumerate()
        .map(|(i, u)| {
            let order = if i % 3 == 0 { vec![a, b] } else { vec![b] };
            (u.clone(), order)
        })
        .collect();
    fill_carts(&app, carts).await;

    let (left, right) = shoppers.split_at(50);
    let (on_first, on_second) = tokio::join!(
        check_out_all_at_once(&app, left),
        check_out_all_at_once(&replica, right)
    );
    let replies: Vec<Reply> = on_first.into_iter().chain(on_second).collect();

    assert_no_5xx(&replies);
    assert_eq!(with_status(&replies, 201).len(), 30, "B limits the orders");
    for reply in with_status(&replies, 409) {
        reply.expect_problem(409, "out_of_stock");
    }
    assert_eq!(app.stock_of(b).await, 0);
    let with_a = with_status(&replies, 201)
        .iter()
        .filter(|r| r.body["items"].as_array().unwrap().len() == 2)
        .count() as i64;
    assert_eq!(app.stock_of(a).await, 30 - with_a);
    assert_eq!(app.order_rows().await, 30);
    assert_eq!(app.outbox_rows_with_key("order.placed").await, 30);
}

/// A shopper puts a new line in the cart while that cart checks out: the line
/// is either in the order (and gone from the cart) or still in the cart (and
/// not in the order) — never lost by the checkout that empties the cart, and
/// never ordered without being priced.
async fn a_line_put_while_its_cart_checks_out_is_ordered_or_kept(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let first = id_of(&app.product(&seller, "Lamp", 1_000, 10_000).await);
    let added = id_of(&app.product(&seller, "Bulb", 150, 10_000).await);
    let shoppers = app.customers(8).await;
    let (mut ordered, mut kept) = (0, 0);
    for _ in 0..6 {
        for shopper in &shoppers {
            app.put_item(shopper, first, 1).await.expect(200);
        }
        let rounds = shoppers.iter().map(|shopper| {
            let app = &app;
            async move {
                let key = Uuid::new_v4().to_string();
                let (checkout, put) =
                    tokio::join!(app.checkout(shopper, Some(&key), None), async {
                        tokio::time::sleep(std::time::Duration::from_millis(u64::from(
                            shopper.id.as_bytes()[0] % 8,
                        )))
                        .await;
                        app.put_item(shopper, added, 2).await
                    });
                put.expect(200);
                checkout.expect(201);
                let items = checkout.body["items"].as_array().unwrap().clone();
                let in_order = items.iter().any(|i| i["product_id"] == added.to_string());
                let cart = app.cart(shopper).await;
                cart.expect(200);
                let in_cart = cart.body["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|l| l["product_id"] == added.to_string());
                assert!(
                    in_order != in_cart,
                    "the line is in the order: {in_order}, in the cart: {in_cart}: {items:?} / {}",
                    cart.body
                );
                if in_order {
                    let line = items.iter().find(|i| i["product_id"] == added.to_string());
                    assert_eq!(line.unwrap()["quantity"], 2);
                    assert_eq!(checkout.body["total"], 1_000 + 2 * 150);
                } else {
                    assert_eq!(checkout.body["total"], 1_000);
                }
                // The next round starts from an empty cart.
                app.remove_item(shopper, added).await;
                in_order
            }
        });
        for in_order in futures::future::join_all(rounds).await {
            if in_order {
                ordered += 1;
            } else {
                kept += 1;
            }
        }
    }
    assert_eq!(ordered + kept, 6 * 8);
}
