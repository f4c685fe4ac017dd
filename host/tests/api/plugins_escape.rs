//! Plugins that try to escape their limits the ways they were found to: a
//! guest that blocks inside a WASI call, one whose prices overflow the
//! cart's sums, a seller's dry runs used as a furnace, and many copies of a
//! burning plugin in one request. Each is driven over HTTP against real
//! hosts with the real components of `plugins/misbehave`.

use std::time::{Duration, Instant};

use futures::future::join_all;
use serde_json::{Value, json};

use crate::helpers::{Backend, Reply, id_of, spawn_app, spawn_app_with};
use crate::plugin_helpers::{
    assert_charged_as_shown, assert_ran, component, host_options, line_of, violations_with,
};

every_backend!(
    a_sleeping_plugin_answers_within_its_time_limit,
    overflowing_prices_are_the_plugins_failure,
    dry_run_samples_are_capped_like_carts,
    dry_runs_are_capped_per_merchant,
    a_request_has_one_plugin_budget,
);

/// Far beyond a plugin call's 100 ms limit and far below the 20 s a blocked
/// call used to take: what "answers at once" means for a whole request.
const PROMPT: Duration = Duration::from_secs(3);

/// The reply to `request` and how long it took.
async fn timed(request: impl std::future::Future<Output = Reply>) -> (Reply, Duration) {
    let started = Instant::now();
    let reply = request.await;
    (reply, started.elapsed())
}

#[track_caller]
fn assert_prompt(what: &str, took: Duration) {
    assert!(
        took < PROMPT,
        "{what} took {took:?}; a plugin must not hold a request past its limits"
    );
}

/// A guest that sleeps 20 s inside `wasi:clocks` / `wasi:io/poll` no longer
/// holds the request: the sandbox's clock is fixed, so a sleep returns at
/// once, and a guest that waits for the clock to move is stopped by its
/// limits, under its policy, within about the time limit.
async fn a_sleeping_plugin_answers_within_its_time_limit(backend: Backend) {
    let Some(wasm) = component("sleeper") else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Clock", 1_000, 100).await);
    let alice = app.customer().await;
    app.put_item(&alice, product, 2).await.expect(200);
    let plugin = app
        .install_plugin(&seller, "sleeper", "pricing", &wasm, json!({}))
        .await;
    let plugin_id = id_of(&plugin);

    // closed: the cart view shows the failure, checkout answers 503, both at once.
    let (cart, took) = timed(app.cart(&alice)).await;
    assert_prompt("the cart view", took);
    cart.expect(200);
    let failed = violations_with(&cart.body, "plugin_failed");
    assert_eq!(failed.len(), 1, "{}", cart.body);
    let message = failed[0]["message"].as_str().unwrap();
    assert!(
        message.contains("sleeper") && message.contains("limit reached"),
        "the reason names the limit: {message}"
    );
    assert_eq!(cart.body["total"], 2_000, "nothing applied");
    let (refused, took) = timed(app.checkout(&alice, Some("sleep-1"), None)).await;
    assert_prompt("checkout", took);
    refused.expect_problem(503, "plugin_failed");
    assert_eq!(app.order_rows().await, 0);

    // open: priced without it, and the order is placed at once.
    app.patch_plugin(&seller, plugin_id, json!({"failure_policy": "open"}))
        .await
        .expect(200);
    let (cart, took) = timed(app.cart(&alice)).await;
    assert_prompt("the cart view", took);
    cart.expect(200);
    assert_eq!(cart.body["violations"], json!([]), "{}", cart.body);
    assert_eq!(cart.body["total"], 2_000);
    let started = Instant::now();
    let order = app.place_order(&alice).await;
    assert_prompt("checkout", started.elapsed());
    assert_charged_as_shown(&order, &cart.body);
    assert_ran(&order, &[(&plugin, "skipped")]);

    // A guest that sleeps once, or reads stdin to its end, goes on at once
    // and its answer applies.
    for mode in ["once", "stdin"] {
        app.patch_plugin(&seller, plugin_id, json!({"config": {"mode": mode}}))
            .await
            .expect(200);
        let (cart, took) = timed(app.put_item(&alice, product, 2)).await;
        assert_prompt(mode, took);
        cart.expect(200);
        assert_eq!(cart.body["violations"], json!([]), "{mode}: {}", cart.body);
        assert_eq!(line_of(&cart.body, product)["unit_price"], 500, "{mode}");
    }
    let started = Instant::now();
    let order = app.place_order(&alice).await;
    assert_prompt("checkout", started.elapsed());
    assert_eq!(order["total"], 1_000, "{order}");
    assert_ran(&order, &[(&plugin, "applied")]);
}

/// A seller's pricing plugin sets `i64::MAX` on its lines: the sums no longer
/// fit, which is that plugin's invalid answer, not the shopper's fault. Under
/// `closed` the cart view shows its failure and checkout answers 503; under
/// `open` the cart, the other seller's lines included, prices and sells
/// without it.
async fn overflowing_prices_are_the_plugins_failure(backend: Backend) {
    let Some(wasm) = component("overflow_pricer") else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (seller_a, seller_b) = (app.seller().await, app.seller().await);
    let a1 = id_of(&app.product(&seller_a, "Anvil", 1_000, 100).await);
    let a2 = id_of(&app.product(&seller_a, "Hammer", 2_000, 100).await);
    let b1 = id_of(&app.product(&seller_b, "Nails", 500, 100).await);
    // Two of the seller's own lines; and one of its lines next to the other
    // seller's, where only the sum with that line overflows.
    let alice = app.customer().await;
    for (product, quantity) in [(a1, 1), (a2, 1), (b1, 2)] {
        app.put_item(&alice, product, quantity).await.expect(200);
    }
    let bob = app.customer().await;
    for product in [a1, b1] {
        app.put_item(&bob, product, 1).await.expect(200);
    }
    let plugin = app
        .install_plugin(&seller_a, "overflow-pricer", "pricing", &wasm, json!({}))
        .await;
    let plugin_id = id_of(&plugin);

    for (shopper, total) in [(&alice, 4_000), (&bob, 1_500)] {
        let cart = app.cart(shopper).await;
        cart.expect(200);
        let failed = violations_with(&cart.body, "plugin_failed");
        assert_eq!(failed.len(), 1, "{}", cart.body);
        assert_eq!(failed[0]["plugin"], "overflow-pricer");
        let message = failed[0]["message"].as_str().unwrap();
        assert!(message.contains("too large"), "{message}");
        assert_eq!(cart.body["total"], total, "catalog prices: {}", cart.body);
        assert_eq!(line_of(&cart.body, a1)["unit_price"], 1_000);
        let refused = app
            .checkout(shopper, Some(&uuid::Uuid::new_v4().to_string()), None)
            .await;
        refused.expect_problem(503, "plugin_failed");
        assert!(
            refused.body["reason"]
                .as_str()
                .is_some_and(|r| r.contains("too large")),
            "{}",
            refused.body
        );
    }
    assert_eq!(app.order_rows().await, 0);

    app.patch_plugin(&seller_a, plugin_id, json!({"failure_policy": "open"}))
        .await
        .expect(200);
    for (shopper, total, lines) in [(&alice, 4_000, 3), (&bob, 1_500, 2)] {
        let cart = app.cart_view(shopper).await;
        assert_eq!(cart["violations"], json!([]), "{cart}");
        assert_eq!(cart["total"], total, "{cart}");
        let order = app.place_order(shopper).await;
        assert_charged_as_shown(&order, &cart);
        assert_eq!(order["items"].as_array().unwrap().len(), lines, "{order}");
        assert_ran(&order, &[(&plugin, "skipped")]);
        assert!(
            order["plugins"][0]["reason"]
                .as_str()
                .is_some_and(|r| r.contains("too large")),
            "{order}"
        );
    }
    assert_eq!(app.stock_of(b1).await, 97, "the other seller's lines sold");
}

/// The most lines a dry run's sample may have: as many as a cart's.
const SAMPLE_LINES: usize = 1_000;

/// A dry run's sample cart is held to a real cart's limits (lines,
/// quantities, prices, codes): beyond them it is a 422 problem, answered
/// without running the plugin.
async fn dry_run_samples_are_capped_like_carts(backend: Backend) {
    let Some(wasm) = component("fuel_burner") else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let plugin = app
        .install_plugin(
            &seller,
            "burner",
            "pricing",
            &wasm,
            json!({"config": {"spins": 1_000}}),
        )
        .await;
    let id = id_of(&plugin);
    let line = json!({"quantity": 1, "unit_price": 100});
    let lines = |n: usize| json!({ "lines": vec![line.clone(); n] });

    let full = app.dry_run(&seller, id, lines(SAMPLE_LINES)).await;
    full.expect(200);
    assert_eq!(full.body["failure"], Value::Null, "{}", full.body);
    let (refused, took) = timed(app.dry_run(&seller, id, lines(100_000))).await;
    refused.expect_problem(422, "validation_failed");
    assert_prompt("a refused 100,000-line dry run", took);
    let detail = refused.body["detail"].as_str().unwrap();
    assert!(detail.contains(&SAMPLE_LINES.to_string()), "{detail}");
    app.dry_run(&seller, id, lines(SAMPLE_LINES + 1))
        .await
        .expect_problem(422, "validation_failed");
    for sample in [
        json!({"lines": [{"quantity": 10_001, "unit_price": 100}]}),
        json!({"lines": [{"quantity": 0, "unit_price": 100}]}),
        json!({"lines": [{"quantity": 1, "unit_price": -1}]}),
        json!({"lines": [{"quantity": 1, "unit_price": 100_000_000_001i64}]}),
        json!({"lines": [line], "codes": (0..11).map(|i| format!("CODE{i}")).collect::<Vec<_>>()}),
        json!({"lines": [line], "config": {"blob": "x".repeat(70_000)}}),
    ] {
        let reply = app.dry_run(&seller, id, sample.clone()).await;
        reply.expect_problem(422, "validation_failed");
        assert!(reply.body["field"].is_string(), "{sample}: {}", reply.body);
    }
}

fn slow_dry_runs(config: &mut shopeezy_host::Config) {
    // The endless loop then runs until its wall time: long enough for the
    // concurrent requests to meet.
    config.plugin_time_ms = 2_000;
    config.plugin_fuel = 1_000_000_000_000;
}

/// Dry runs are CPU work on the seller's own input: at most two of one
/// merchant's run at once; beyond that the answer is 429 with
/// `Retry-After`, not a queue. Another merchant is unaffected, and the
/// slots are given back when the runs end.
async fn dry_runs_are_capped_per_merchant(backend: Backend) {
    let Some(wasm) = component("endless_loop") else {
        return;
    };
    let Some(burner) = component("fuel_burner") else {
        return;
    };
    let Some(app) = spawn_app_with(backend, host_options(slow_dry_runs)).await else {
        return;
    };
    let (seller, other) = (app.seller().await, app.seller().await);
    let endless = id_of(
        &app.install_plugin(&seller, "endless", "pricing", &wasm, json!({}))
            .await,
    );
    let others = id_of(
        &app.install_plugin(&other, "endless", "pricing", &wasm, json!({}))
            .await,
    );
    let sample = json!({"lines": [{"quantity": 1, "unit_price": 100}]});

    let runs = (0..6).map(|_| app.dry_run(&seller, endless, sample.clone()));
    let (runs, other_run) = tokio::join!(join_all(runs), async {
        // Sent while the seller's first runs are still going.
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.dry_run(&other, others, sample.clone()).await
    });
    let (ran, refused): (Vec<&Reply>, Vec<&Reply>) =
        runs.iter().partition(|r| r.status.as_u16() == 200);
    assert_eq!(ran.len(), 2, "two at once: {runs:?}");
    for reply in &ran {
        assert_eq!(reply.body["failure"]["kind"], "time", "{}", reply.body);
    }
    for reply in &refused {
        reply.expect_problem(429, "too_many_dry_runs");
        let retry = reply
            .header("retry-after")
            .and_then(|v| v.parse::<u64>().ok());
        assert!(retry.is_some_and(|s| s >= 1), "Retry-After: {retry:?}");
    }
    other_run.expect(200);
    assert_eq!(other_run.body["failure"]["kind"], "time");

    // The slots are free again once the runs are over.
    let quick = id_of(
        &app.install_plugin(
            &seller,
            "quick",
            "pricing",
            &burner,
            json!({"config": {"spins": 10}}),
        )
        .await,
    );
    for _ in 0..3 {
        let reply = app.dry_run(&seller, quick, sample.clone()).await;
        reply.expect(200);
        assert_eq!(reply.body["failure"], Value::Null, "{}", reply.body);
    }
}

/// Ten copies of a plugin that uses most of its own fuel on every call: each
/// is within its limits, but a request's plugins share one budget (by
/// default five calls' fuel), so the copies past it fail with the budget as
/// the reason, under their own policy, and the cart view still answers.
async fn a_request_has_one_plugin_budget(backend: Backend) {
    let Some(wasm) = component("fuel_burner") else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Coal", 1_000, 100).await);
    let alice = app.customer().await;
    app.put_item(&alice, product, 1).await.expect(200);

    // Calibrate: spins that use about 80 % of one call's fuel on a one-line cart.
    let probe = app
        .install_plugin(
            &seller,
            "probe",
            "pricing",
            &wasm,
            json!({"config": {"spins": 100_000}}),
        )
        .await;
    let sample = json!({"lines": [{"quantity": 1, "unit_price": 1_000}]});
    let report = app
        .dry_run(&seller, id_of(&probe), sample.clone())
        .await
        .body;
    let (used, limit) = (
        report["fuel_used"].as_u64().unwrap(),
        report["fuel_limit"].as_u64().unwrap(),
    );
    let spins = 100_000 * (limit * 4 / 5) / used;
    app.delete_plugin(&seller, id_of(&probe)).await.expect(204);

    let mut copies = Vec::new();
    for i in 0..10 {
        copies.push(
            app.install_plugin(
                &seller,
                &format!("burner-{i}"),
                "pricing",
                &wasm,
                json!({"config": {"spins": spins}, "priority": i}),
            )
            .await,
        );
    }
    let report = app.dry_run(&seller, id_of(&copies[0]), sample).await.body;
    assert_eq!(
        report["failure"],
        Value::Null,
        "within its own limits: {report}"
    );
    let used = report["fuel_used"].as_u64().unwrap();
    assert!(used > limit / 2 && used < limit, "{used} of {limit}");
    // The default budget: five calls' fuel, for a one-line cart.
    let budget = 5 * limit;
    let within = usize::try_from(budget / used).unwrap();
    assert!((5..10).contains(&within), "{within} copies fit in {budget}");

    let (cart, took) = timed(app.cart(&alice)).await;
    assert_prompt("the cart view", took);
    cart.expect(200);
    let failed = violations_with(&cart.body, "plugin_failed");
    let names: Vec<&str> = failed
        .iter()
        .map(|v| v["plugin"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = (within..10).map(|i| format!("burner-{i}")).collect();
    assert_eq!(names, expected, "the copies past the budget: {}", cart.body);
    for v in &failed {
        let message = v["message"].as_str().unwrap();
        assert!(message.contains("request plugin budget"), "{message}");
    }

    for copy in &copies {
        app.patch_plugin(&seller, id_of(copy), json!({"failure_policy": "open"}))
            .await
            .expect(200);
    }
    let cart = app.cart_view(&alice).await;
    assert_eq!(cart["violations"], json!([]), "{cart}");
    let order = app.place_order(&alice).await;
    assert_charged_as_shown(&order, &cart);
    let ran: Vec<(&Value, &str)> = copies
        .iter()
        .enumerate()
        .map(|(i, c)| (c, if i < within { "applied" } else { "skipped" }))
        .collect();
    assert_ran(&order, &ran);
    for entry in &order["plugins"].as_array().unwrap()[within..] {
        assert!(
            entry["reason"]
                .as_str()
                .is_some_and(|r| r.contains("request plugin budget")),
            "{entry}"
        );
    }
}
