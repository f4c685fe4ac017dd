//! Plugins under concurrency: a usage-limited code raced by many shoppers is
//! used exactly its cap; a new version swapped in under concurrent checkouts
//! gives every order exactly one consistent version; and a change through
//! one host process is in force on another on the same database within seconds (poll interval + compile).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    Api, Backend, Reply, User, assert_no_5xx, check_out_all_at_once, eventually, id_of, spawn_app,
};
use crate::plugin_helpers::{assert_ran, components, line_of};

every_backend!(
    pgbouncer:
    a_limited_code_raced_by_fifty_shoppers_is_used_exactly_its_cap,
    a_new_version_swapped_in_under_concurrent_checkouts_is_never_mixed,
    a_change_through_one_host_is_in_force_on_the_other_within_a_second,
);

async fn a_limited_code_raced_by_fifty_shoppers_is_used_exactly_its_cap(backend: Backend) {
    let Some([codes]) = components(["promo_codes"]) else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Gadget", 1_000, 1_000).await);
    let plugin = app
        .install_plugin(
            &app.admin,
            "codes",
            "promotion",
            &codes,
            json!({"config": {"codes": [{"code": "LIMITED", "percent": 1000, "limit": {"total": 10}}]}}),
        )
        .await;
    let discount = json!([{"label": "LIMITED: 10% off", "amount": -100, "code": "LIMITED", "plugin": "codes"}]);

    let shoppers = app.customers(50).await;
    let shown: Vec<Reply> = futures::stream::iter(&shoppers)
        .map(|user| {
            let app = &app;
            async move {
                app.put_item(user, product, 1).await.expect(200);
                app.add_code(user, "limited").await
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for cart in &shown {
        cart.expect(200);
        assert_eq!(cart.body["adjustments"], discount, "{}", cart.body);
        assert_eq!(cart.body["total"], 900);
    }

    let replies = check_out_all_at_once(&app, &shoppers).await;

    assert_no_5xx(&replies);
    let placed: Vec<&Reply> = replies.iter().filter(|r| r.status == 201).collect();
    assert_eq!(placed.len(), 10, "exactly the cap is used");
    for reply in &placed {
        assert_eq!(reply.body["adjustments"], discount, "{}", reply.body);
        assert_eq!(reply.body["total"], 900);
        assert_ran(&reply.body, &[(&plugin, "applied")]);
    }
    let refused: Vec<&Reply> = replies.iter().filter(|r| r.status != 201).collect();
    assert_eq!(refused.len(), 40);
    for reply in &refused {
        reply.expect_problem(409, "promotion_unavailable");
        assert_eq!(reply.body["label"], "LIMITED", "{}", reply.body);
    }
    assert_eq!(app.order_rows().await, 10, "no order without its discount");
    assert_eq!(app.stock_of(product).await, 990);
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM promotion_usage WHERE uses = 10 AND customer_key = ''",
            None
        )
        .await,
        1,
        "the counter is at its cap"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM order_promotion_usage", None)
            .await,
        10
    );

    // The shoppers left out now see the cart without the discount.
    let owner = |reply: &Reply| {
        shoppers
            .iter()
            .find(|u| reply.body["user_id"] == u.id.to_string())
            .unwrap()
            .clone()
    };
    let placed_by: Vec<User> = placed.iter().map(|r| owner(r)).collect();
    let left_out: Vec<User> = shoppers
        .iter()
        .filter(|u| !placed_by.iter().any(|p| p.id == u.id))
        .cloned()
        .collect();
    let cart = app.cart_view(&left_out[0]).await;
    assert_eq!(cart["adjustments"], json!([]), "{cart}");
    assert_eq!(cart["codes"], json!(["LIMITED"]));
    assert_eq!(cart["total"], 1_000);

    // Cancelling an order gives its use back: the next shopper gets it...
    app.cancel_order(&placed_by[0], placed[0].id())
        .await
        .expect(200);
    let cart = app.cart_view(&left_out[0]).await;
    assert_eq!(cart["adjustments"], discount, "{cart}");
    let order = app.place_order(&left_out[0]).await;
    assert_eq!(order["adjustments"], discount);
    assert_eq!(order["total"], 900);
    // ...and only that one.
    assert_eq!(app.cart_view(&left_out[1]).await["adjustments"], json!([]));
    app.checkout(&left_out[1], Some("after-the-cap"), None)
        .await
        .expect_problem(409, "promotion_unavailable");
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM promotion_usage WHERE uses = 10 AND customer_key = ''",
            None
        )
        .await,
        1
    );
}

/// Asserts that `order` records one version of the plugin and shows its
/// behaviour and no other's: odd versions are the sale (`attribute_sale`, a
/// line discount), even ones the snoop (`wasi_snoop`, a 0.01 % order
/// discount). The version.
fn assert_consistent(order: &Value, products: &[Uuid], plugin_id: Uuid) -> i64 {
    let ran = order["plugins"].as_array().unwrap();
    assert_eq!(ran.len(), 1, "exactly one entry: {order}");
    assert_eq!(ran[0]["id"], plugin_id.to_string());
    assert_eq!(ran[0]["outcome"], "applied", "{order}");
    let version = ran[0]["version"].as_i64().unwrap();
    match version % 2 {
        // attribute-sale: 10 % off each line, nothing on the order.
        1 => {
            for &p in products {
                assert_eq!(
                    line_of(order, p)["adjustments"],
                    json!([{"label": "Sale 10%", "amount": -5_000, "plugin": "sale"}]),
                    "version {version}: {order}"
                );
            }
            assert_eq!(
                order["adjustments"],
                json!([]),
                "version {version}: {order}"
            );
            assert_eq!(order["total"], 90_000);
        }
        // wasi-snoop: no line discount, 0.01 % off the order.
        _ => {
            for &p in products {
                assert_eq!(
                    line_of(order, p)["adjustments"],
                    json!([]),
                    "version 2: {order}"
                );
            }
            let adjustments = order["adjustments"].as_array().unwrap();
            assert_eq!(adjustments.len(), 1, "version 2: {order}");
            assert_eq!(adjustments[0]["amount"], -10);
            assert!(
                adjustments[0]["label"]
                    .as_str()
                    .unwrap()
                    .starts_with("file: error"),
                "{order}"
            );
            assert_eq!(order["total"], 99_990);
        }
    }
    version
}

async fn a_new_version_swapped_in_under_concurrent_checkouts_is_never_mixed(backend: Backend) {
    let Some([sale, snoop]) = components(["attribute_sale", "wasi_snoop"]) else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let on_sale = json!({"sale_percent": "10"});
    let mut products = Vec::new();
    for name in ["Sofa", "Table"] {
        products.push(id_of(
            &app.product_with(&seller, name, 50_000, 1_000, &[], on_sale.clone())
                .await,
        ));
    }
    let plugin = app
        .install_plugin(&app.admin, "sale", "promotion", &sale, json!({}))
        .await;
    let plugin_id = id_of(&plugin);
    let shoppers = app.customers(40).await;
    futures::stream::iter(&shoppers)
        .for_each_concurrent(16, |user| {
            let (app, products) = (&app, &products);
            async move {
                for &p in products {
                    app.put_item(user, p, 1).await.expect(200);
                }
            }
        })
        .await;

    // The host compiles each component once (cached by content hash): an
    // upload of the second component now makes every swap below quick.
    let warm = app
        .install_plugin(&app.admin, "warm-up", "promotion", &snoop, json!({}))
        .await;
    app.delete_plugin(&app.admin, id_of(&warm))
        .await
        .expect(204);

    // While the 40 check out, new versions are swapped in one after the
    // other: even versions are the snoop, odd ones the sale again. The
    // shoppers come in four waves of ten concurrent checkouts, each wave once
    // a version newer than any the previous wave's orders saw is in force
    // (on SQLite a swap can wait for a whole wave of writers), so the orders
    // span at least four versions.
    let done = AtomicBool::new(false);
    let in_force = AtomicI64::new(1);
    let checkouts = async {
        let mut replies = Vec::new();
        for wave in shoppers.chunks(10) {
            let placed = check_out_all_at_once(&app, wave).await;
            let newest = placed
                .iter()
                .filter_map(|r| r.body["plugins"][0]["version"].as_i64())
                .max()
                .unwrap_or(0);
            replies.extend(placed);
            let swapped = eventually(Duration::from_secs(30), || async {
                in_force.load(Ordering::SeqCst) > newest
            })
            .await;
            assert!(swapped, "a new version is swapped in within 30 s");
        }
        done.store(true, Ordering::SeqCst);
        replies
    };
    let swaps = async {
        let mut version = 1;
        while !done.load(Ordering::SeqCst) {
            let wasm = if version % 2 == 1 { &snoop } else { &sale };
            let reply = app.replace_component(&app.admin, plugin_id, wasm).await;
            reply.expect(200);
            version += 1;
            assert_eq!(reply.body["version"], version);
            // Answered once this host runs it.
            in_force.store(version, Ordering::SeqCst);
        }
        version
    };
    let (replies, last_version) = tokio::join!(checkouts, swaps);

    assert_no_5xx(&replies);
    let mut versions = BTreeSet::new();
    for reply in &replies {
        reply.expect(201);
        versions.insert(assert_consistent(&reply.body, &products, plugin_id));
        let stored = app.get_order(&app.admin, reply.id()).await;
        stored.expect(200);
        assert_eq!(
            stored.body, reply.body,
            "the stored order is the one answered"
        );
    }
    assert!(
        versions.len() >= 4,
        "the swaps happened while orders were placed: versions {versions:?}"
    );
    assert_eq!(app.order_rows().await, 40);
    // After the swaps, the last version is in force.
    let late = app.customer().await;
    for &p in &products {
        app.put_item(&late, p, 1).await.expect(200);
    }
    let order = app.place_order(&late).await;
    assert_eq!(
        assert_consistent(&order, &products, plugin_id),
        last_version
    );
}

/// The discount the cart view of `user` shows through `api`.
async fn discount_seen(api: &Api, user: &User) -> Value {
    let cart = api.cart(user).await;
    cart.expect(200);
    cart.body["discount_total"].clone()
}

async fn a_change_through_one_host_is_in_force_on_the_other_within_a_second(backend: Backend) {
    let Some([sale, snoop]) = components(["attribute_sale", "wasi_snoop"]) else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let replica = app.replica().await;
    let (first, second): (&Api, &Api) = (&app, &replica);
    let seller = app.seller().await;
    let product = id_of(
        &app.product_with(
            &seller,
            "Chair",
            100_000,
            100,
            &[],
            json!({"sale_percent": "10"}),
        )
        .await,
    );
    let alice = app.customer().await;
    app.put_item(&alice, product, 1).await.expect(200);
    assert_eq!(discount_seen(second, &alice).await, 0);
    // The poll interval (250 ms) plus compiling the component on the other
    // host, which on a loaded 2-core CI machine took longer than a second.
    let within = Duration::from_secs(5);

    // Installed through the first: in force on the second.
    let plugin = first
        .install_plugin(&app.admin, "sale", "promotion", &sale, json!({}))
        .await;
    let id = id_of(&plugin);
    assert!(
        eventually(within, || async {
            discount_seen(second, &alice).await == 10_000
        })
        .await,
        "the install is in force on the other host within 5 s"
    );

    // Disabled through the first: off on the second.
    first
        .patch_plugin(&app.admin, id, json!({"enabled": false}))
        .await
        .expect(200);
    assert!(
        eventually(within, || async {
            discount_seen(second, &alice).await == 0
        })
        .await,
        "disabling is in force on the other host within 5 s"
    );

    // Enabled, with a new config, through the second: on the first.
    second
        .patch_plugin(
            &app.admin,
            id,
            json!({"enabled": true, "config": {"max_percent": 5}}),
        )
        .await
        .expect(200);
    assert!(
        eventually(within, || async {
            discount_seen(first, &alice).await == 5_000
        })
        .await,
        "settings are in force on the other host within 5 s"
    );

    // A new version through the first: on the second, and an order placed
    // there records it.
    let v2 = first.replace_component(&app.admin, id, &snoop).await;
    v2.expect(200);
    assert_eq!(v2.body["version"], 2);
    assert!(
        eventually(within, || async {
            discount_seen(second, &alice).await == 10
        })
        .await,
        "a new version is in force on the other host within 5 s"
    );
    let order = second.place_order(&alice).await;
    assert_eq!(order["plugins"][0]["version"], 2, "{order}");
    assert_eq!(order["discount_total"], 10);

    // Deleted through the second: gone on the first.
    second.put_item(&alice, product, 1).await.expect(200);
    second.delete_plugin(&app.admin, id).await.expect(204);
    assert!(
        eventually(within, || async { discount_seen(first, &alice).await == 0 }).await,
        "the uninstall is in force on the other host within 5 s"
    );
    let order = first.place_order(&alice).await;
    assert_eq!(order["plugins"], json!([]), "{order}");
    first
        .get_plugin(&app.admin, id)
        .await
        .expect_problem(404, "not_found");
}
