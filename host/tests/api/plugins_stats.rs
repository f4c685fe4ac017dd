//! A plugin's statistics as its merchant's console reads them
//! (`GET /v1/plugins/{id}/stats`): every cart view and checkout that ran it
//! is counted, with its time, and its failures with the reason the shopper
//! saw; dry runs are not; only its owner and admins may read them. And the
//! dry-run report shows the limits the call ran under.
//!
//! The figures live in the host replica's memory, whatever the database,
//! so the embedded backend serves.

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Api, Backend, User, id_of, send, spawn_app_with};
use crate::plugin_helpers::{components, host_options, violations_with};

impl Api {
    /// `GET /v1/plugins/{id}/stats`.
    pub async fn plugin_stats(&self, user: &User, id: Uuid) -> crate::helpers::Reply {
        send(self.host_as(user, Method::GET, &format!("/v1/plugins/{id}/stats"))).await
    }

    /// The plugin's statistics (asserting 200).
    pub async fn stats_of(&self, user: &User, id: Uuid) -> Value {
        let reply = self.plugin_stats(user, id).await;
        reply.expect(200);
        reply.body
    }
}

fn at(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("not an RFC 3339 time: {value}"))
}

/// Per-call limits other than the defaults, to see them in the report.
fn limits(config: &mut shopeezy_host::Config) {
    config.plugin_time_ms = 150;
    config.plugin_memory_mib = 32;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stats_count_every_cart_view_and_checkout_but_no_dry_run() {
    let Some([volume]) = components(["volume_pricing"]) else {
        return;
    };
    let Some(app) = spawn_app_with(Backend::Embedded, host_options(limits)).await else {
        return;
    };
    let seller = app.seller().await;
    let mug = app
        .product_with(&seller, "Mug", 1_999, 500, &[], json!({}))
        .await;
    let plugin = app
        .install_plugin(
            &seller,
            "volume",
            "pricing",
            &volume,
            json!({"config": {
                "tiers": [{"min_quantity": 10, "percent_off": 5}],
                "skus": [mug["sku"]],
            }}),
        )
        .await;
    let id = id_of(&plugin);

    let stats = app.stats_of(&seller, id).await;
    let since = at(&stats["since"]);
    assert_eq!(
        stats,
        json!({
            "plugin_id": id, "calls": 0, "failures": 0, "recent_failures": [],
            "p50_us": null, "p99_us": null, "sampled_calls": 0, "since": stats["since"],
        }),
        "nothing counted yet, and exactly these members"
    );
    assert!(since <= Utc::now());

    // The put answers the priced cart: one call; then four cart views.
    let alice = app.customer().await;
    app.put_item(&alice, id_of(&mug), 12).await.expect(200);
    for _ in 0..4 {
        let cart = app.cart_view(&alice).await;
        assert_eq!(
            cart["items"][0]["unit_price"], 1_900,
            "the plugin ran: {cart}"
        );
    }
    let stats = app.stats_of(&seller, id).await;
    assert_eq!(stats["calls"], 5, "{stats}");
    assert_eq!(stats["failures"], 0, "{stats}");
    assert_eq!(stats["sampled_calls"], 5, "{stats}");
    let (p50, p99) = (
        stats["p50_us"].as_u64().unwrap(),
        stats["p99_us"].as_u64().unwrap(),
    );
    assert!(
        0 < p50 && p50 <= p99 && p99 < 150_000,
        "call times within the limit: {stats}"
    );

    // Dry runs are the merchant's experiments: not counted.
    let sample = json!({"lines": [
        {"sku": mug["sku"], "quantity": 12, "unit_price": 1_999},
        {"sku": "OTHER", "quantity": 1, "unit_price": 500},
    ]});
    let report = app.dry_run(&seller, id, sample).await;
    report.expect(200);
    let report = report.body;
    assert_eq!(report["failure"], Value::Null, "{report}");
    // The limits of a call on two lines, beside what it used: the same
    // per-line rule the pipeline uses (150 ms + 0.5 ms per line, rounded
    // down to the millisecond).
    assert_eq!(report["time_limit_us"], 151_000, "{report}");
    assert_eq!(report["memory_limit_bytes"], 32 << 20, "{report}");
    assert_eq!(report["log_lines_limit"], 100, "{report}");
    assert_eq!(report["log_bytes_limit"], 16 << 10, "{report}");
    assert_eq!(report["fuel_limit"], 20_000_000 + 2 * 200_000, "{report}");
    for kept in [
        "fuel_used",
        "time_us",
        "peak_memory_bytes",
        "logs",
        "logs_dropped",
    ] {
        assert!(!report[kept].is_null(), "{kept} is still there: {report}");
    }
    assert!(
        report["peak_memory_bytes"].as_u64().unwrap() <= 32 << 20,
        "{report}"
    );
    assert_eq!(app.stats_of(&seller, id).await["calls"], 5);

    // A checkout prices the cart once more.
    app.place_order(&alice).await;
    let stats = app.stats_of(&seller, id).await;
    assert_eq!(stats["calls"], 6, "{stats}");
    assert_eq!(at(&stats["since"]), since, "the same counting");

    // Another seller cannot tell the plugin exists; an admin reads it; a
    // shopper is not a merchant.
    let other = app.seller().await;
    app.plugin_stats(&other, id)
        .await
        .expect_problem(404, "not_found");
    app.plugin_stats(&other, Uuid::new_v4())
        .await
        .expect_problem(404, "not_found");
    assert_eq!(app.stats_of(&app.admin, id).await["calls"], 6);
    app.plugin_stats(&alice, id)
        .await
        .expect_problem(403, "forbidden");

    // Uninstalled: gone.
    app.delete_plugin(&seller, id).await.expect(204);
    app.plugin_stats(&seller, id)
        .await
        .expect_problem(404, "not_found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_plugins_stats_give_the_reason_the_shopper_saw() {
    let Some([panic]) = components(["panic"]) else {
        return;
    };
    let Some(app) = spawn_app_with(Backend::Embedded, host_options(limits)).await else {
        return;
    };
    let seller = app.seller().await;
    let lamp = id_of(&app.product(&seller, "Lamp", 1_000, 100).await);
    let plugin = app
        .install_plugin(&seller, "panic", "pricing", &panic, json!({}))
        .await;
    let id = id_of(&plugin);
    let before = Utc::now();

    // `closed`: the cart view shows the failure.
    let alice = app.customer().await;
    app.put_item(&alice, lamp, 1).await.expect(200);
    let cart = app.cart_view(&alice).await;
    let shown = violations_with(&cart, "plugin_failed");
    assert_eq!(shown.len(), 1, "{cart}");
    let message = shown[0]["message"].as_str().unwrap();
    let stats = app.stats_of(&seller, id).await;
    assert_eq!(
        (&stats["calls"], &stats["failures"]),
        (&json!(2), &json!(2))
    );
    let recent = stats["recent_failures"].as_array().unwrap();
    assert_eq!(recent.len(), 2, "{stats}");
    assert_eq!(recent[0]["kind"], "trap", "{stats}");
    let reason = recent[0]["reason"].as_str().unwrap();
    assert_eq!(
        message,
        format!("plugin panic failed: {reason}"),
        "the reason the shopper saw"
    );
    assert!(at(&recent[0]["at"]) >= before && at(&recent[0]["at"]) <= Utc::now());
    assert!(at(&recent[0]["at"]) >= at(&recent[1]["at"]), "newest first");
    assert_eq!(stats["sampled_calls"], 2, "a trap is a call, timed");

    // `open`: skipped, and the order records the same reason.
    app.patch_plugin(&seller, id, json!({"failure_policy": "open"}))
        .await
        .expect(200);
    let order = app.place_order(&alice).await;
    assert_eq!(order["plugins"][0]["outcome"], "skipped", "{order}");
    let stats = app.stats_of(&seller, id).await;
    assert_eq!(stats["calls"], stats["failures"], "{stats}");
    assert_eq!(
        stats["recent_failures"][0]["reason"], order["plugins"][0]["reason"],
        "{stats} {order}"
    );

    // Only the latest ten failures are kept; every one is counted.
    let calls = stats["calls"].as_u64().unwrap();
    app.put_item(&alice, lamp, 1).await.expect(200);
    for _ in 0..10 {
        app.cart_view(&alice).await;
    }
    let stats = app.stats_of(&seller, id).await;
    assert_eq!(stats["calls"], calls + 11, "{stats}");
    assert_eq!(stats["failures"], calls + 11, "{stats}");
    assert_eq!(stats["recent_failures"].as_array().unwrap().len(), 10);
}

/// A request budget of one fuel unit: the first plugin runs out of it, and
/// the next is refused without being called.
fn one_fuel_unit_per_request(config: &mut shopeezy_host::Config) {
    config.plugin_request_fuel = 1;
    config.plugin_request_fuel_per_line = 0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn budget_refusals_are_failed_calls_without_a_time() {
    let Some([volume]) = components(["volume_pricing"]) else {
        return;
    };
    let Some(app) =
        spawn_app_with(Backend::Embedded, host_options(one_fuel_unit_per_request)).await
    else {
        return;
    };
    let seller = app.seller().await;
    let lamp = id_of(&app.product(&seller, "Lamp", 1_000, 100).await);
    let config = json!({"config": {"tiers": [{"min_quantity": 10, "percent_off": 5}]}});
    let first = id_of(
        &app.install_plugin(&app.admin, "first", "pricing", &volume, config.clone())
            .await,
    );
    let config = json!({"priority": 200, "config": config["config"]});
    let second = id_of(
        &app.install_plugin(&app.admin, "second", "pricing", &volume, config)
            .await,
    );
    let alice = app.customer().await;
    app.put_item(&alice, lamp, 1).await.expect(200);

    let ran = app.stats_of(&app.admin, first).await;
    assert_eq!((&ran["calls"], &ran["failures"]), (&json!(1), &json!(1)));
    assert_eq!(ran["recent_failures"][0]["kind"], "budget", "{ran}");
    assert_eq!(ran["sampled_calls"], 1, "it was called: {ran}");

    let refused = app.stats_of(&app.admin, second).await;
    assert_eq!(
        (&refused["calls"], &refused["failures"]),
        (&json!(1), &json!(1))
    );
    assert_eq!(refused["recent_failures"][0]["kind"], "budget", "{refused}");
    assert!(
        refused["recent_failures"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("request plugin budget spent"),
        "{refused}"
    );
    assert_eq!(refused["sampled_calls"], 0, "never called: {refused}");
    assert_eq!(
        (&refused["p50_us"], &refused["p99_us"]),
        (&Value::Null, &Value::Null)
    );
}
