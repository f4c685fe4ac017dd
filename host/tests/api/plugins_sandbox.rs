//! The sandbox: each misbehaving plugin (`plugins/misbehave`) is contained
//! with the right reason under both failure policies while other shoppers'
//! requests keep succeeding; a guest that snoops gets nothing; a chatty one
//! is bounded; and uploads that are not a component of the hook's world, or
//! break a limit, or come with a bad manifest, are refused with the reason.

use futures::future::join_all;
use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    Api, Backend, Reply, TestApp, User, assert_no_5xx, id_of, send, spawn_app, spawn_app_with,
};
use crate::plugin_helpers::{
    assert_charged_as_shown, assert_ran, component, components, host_options, manifest,
    upload_form, violations_with,
};

every_backend!(
    endless_loop_runs_out_of_fuel,
    memory_hog_hits_the_memory_limit,
    deep_recursion_overflows_the_stack,
    deep_recursion_in_linear_memory_traps,
    panic_is_a_trap,
    huge_output_is_refused,
    huge_error_text_is_a_bounded_failure,
    invalid_output_is_refused,
    negative_price_is_refused,
    invalid_discount_is_refused,
    discount_beyond_the_line_is_refused,
    wasi_snoop_sees_nothing,
    chatty_logger_is_bounded,
    invalid_uploads_are_refused_with_the_reason,
    bad_manifests_are_refused,
);

/// The memory limit of these apps' plugin calls, in MiB: small, so the
/// memory hog meets it soon.
const MEMORY_MIB: usize = 16;

fn small_memory(config: &mut shopeezy_host::Config) {
    config.plugin_memory_mib = MEMORY_MIB;
}

/// A misbehaving plugin and what must stop it.
struct Bad {
    /// The crate, with `_` (the `.wasm` file's name).
    component: &'static str,
    hook: &'static str,
    config: Value,
    /// The failure kinds that are the right reason.
    kinds: &'static [&'static str],
    /// Whether `dry-run` (which checks an answer's shape, not its amounts
    /// against the cart) reports the failure too.
    dry_run_fails: bool,
}

/// Installs `bad` on a store with shoppers, under `closed` then `open`, and
/// checks each time what the owner, the shopper and everyone else see.
async fn contained(backend: Backend, bad: Bad) {
    let Some(wasm) = component(bad.component) else {
        return;
    };
    let Some(app) = spawn_app_with(backend, host_options(small_memory)).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Lamp", 1_000, 100).await);
    let alice = app.customer().await;
    app.put_item(&alice, product, 2).await.expect(200);
    let others = app.customers(10).await;
    for user in &others {
        app.put_item(user, product, 1).await.expect(200);
    }
    let name = bad.component.replace('_', "-");
    let plugin = app
        .install_plugin(
            &app.admin,
            &name,
            bad.hook,
            &wasm,
            json!({"config": bad.config}),
        )
        .await;
    let plugin_id = id_of(&plugin);
    assert_eq!(plugin["failure_policy"], "closed", "the default policy");

    // The owner's dry run names the reason.
    let report = app
        .dry_run(
            &app.admin,
            plugin_id,
            json!({"lines": [{"sku": "LAMP", "quantity": 2, "unit_price": 1_000}]}),
        )
        .await;
    report.expect(200);
    let report = report.body;
    if bad.dry_run_fails {
        let kind = report["failure"]["kind"].as_str().unwrap_or_default();
        assert!(
            bad.kinds.contains(&kind),
            "{name}: failure kind {kind:?}, expected one of {:?}: {report}",
            bad.kinds
        );
        assert_eq!(report["output"], Value::Null, "{report}");
        let reason = report["failure"]["reason"].as_str().unwrap();
        assert!(
            !reason.is_empty() && reason.len() <= 1_024,
            "a bounded reason: {reason}"
        );
        match kind {
            "fuel" => {
                assert!(reason.contains("fuel limit"), "{reason}");
                assert_eq!(report["fuel_used"], report["fuel_limit"], "{report}");
            }
            "memory" => {
                assert!(
                    reason.contains(&(MEMORY_MIB << 20).to_string()),
                    "the reason names the limit: {reason}"
                );
                assert!(
                    report["peak_memory_bytes"].as_u64().unwrap() <= (MEMORY_MIB << 20) as u64,
                    "{report}"
                );
            }
            _ => {}
        }
    }

    // closed: the cart view shows the failure; checkout is refused, writing nothing.
    let cart = app.cart_view(&alice).await;
    let failed = violations_with(&cart, "plugin_failed");
    assert_eq!(failed.len(), 1, "{cart}");
    assert_eq!(failed[0]["plugin"], name.as_str());
    assert!(
        failed[0]["message"].as_str().unwrap().contains(&name),
        "{cart}"
    );
    assert_eq!(cart["items"][0]["unit_price"], 1_000, "nothing applied");
    assert_eq!(cart["total"], 2_000, "{cart}");
    let refused = app.checkout(&alice, Some("closed-1"), None).await;
    refused.expect_problem(503, "plugin_failed");
    assert_eq!(
        refused.body["plugin"],
        json!({"id": plugin_id, "name": name, "version": 1}),
        "{}",
        refused.body
    );
    assert!(
        refused.body["detail"].as_str().unwrap().contains(&name),
        "{}",
        refused.body
    );
    assert!(
        refused.body["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{}",
        refused.body
    );
    assert_eq!(app.order_rows().await, 0, "no order");
    assert_eq!(app.outbox_rows().await, 0, "no event");
    assert_eq!(app.stock_of(product).await, 100, "no stock taken");
    assert_eq!(
        app.cart_lines(&alice).await,
        vec![(product, 2)],
        "cart kept"
    );
    others_keep_shopping(&app, &others, product, 503).await;
    assert_eq!(app.order_rows().await, 0);

    // open: the plugin is skipped, and the order says so.
    let switched = app
        .patch_plugin(&app.admin, plugin_id, json!({"failure_policy": "open"}))
        .await;
    switched.expect(200);
    assert_eq!(switched.body["failure_policy"], "open");
    let cart = app.cart_view(&alice).await;
    assert_eq!(cart["violations"], json!([]), "{cart}");
    assert_eq!(cart["total"], 2_000);
    let order = app.place_order(&alice).await;
    assert_charged_as_shown(&order, &cart);
    assert_ran(&order, &[(&plugin, "skipped")]);
    assert!(
        order["plugins"][0]["reason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "the order records why: {order}"
    );
    assert_eq!(app.stock_of(product).await, 98);
    others_keep_shopping(&app, &others, product, 201).await;
    assert_eq!(app.order_rows().await, 1 + others.len() as i64);
}

/// While the bad plugin is installed, `others` view their carts and the
/// catalog and check out, all at once: nothing is a 5xx but the documented
/// 503 `plugin_failed` of checkout (`checkout_status` 503, under `closed`).
async fn others_keep_shopping(app: &TestApp, others: &[User], product: Uuid, checkout_status: u16) {
    let api: &Api = app;
    let views = others
        .iter()
        .chain(others)
        .map(|u| async move { api.cart(u).await });
    let reads = (0..20).map(|i| async move {
        if i % 2 == 0 {
            api.get_product(product).await
        } else {
            api.list_products("limit=10").await
        }
    });
    let checkouts = others.iter().map(|u| async move {
        api.checkout(u, Some(&Uuid::new_v4().to_string()), None)
            .await
    });
    let (views, reads, checkouts): (Vec<Reply>, Vec<Reply>, Vec<Reply>) =
        tokio::join!(join_all(views), join_all(reads), join_all(checkouts));
    assert_no_5xx(&views);
    assert_no_5xx(&reads);
    for reply in views.iter().chain(&reads) {
        reply.expect(200);
    }
    for reply in &checkouts {
        if checkout_status == 503 {
            reply.expect_problem(503, "plugin_failed");
        } else {
            reply.expect(checkout_status);
        }
    }
}

async fn endless_loop_runs_out_of_fuel(backend: Backend) {
    let bad = Bad {
        component: "endless_loop",
        hook: "pricing",
        config: json!({}),
        kinds: &["fuel"],
        dry_run_fails: true,
    };
    contained(backend, bad).await;
}

async fn memory_hog_hits_the_memory_limit(backend: Backend) {
    let bad = Bad {
        component: "memory_hog",
        hook: "pricing",
        config: json!({}),
        kinds: &["memory"],
        dry_run_fails: true,
    };
    contained(backend, bad).await;
}

async fn deep_recursion_overflows_the_stack(backend: Backend) {
    let bad = Bad {
        component: "deep_recursion",
        hook: "pricing",
        config: json!({}),
        kinds: &["stack", "trap"],
        dry_run_fails: true,
    };
    contained(backend, bad).await;
}

async fn deep_recursion_in_linear_memory_traps(backend: Backend) {
    let bad = Bad {
        component: "deep_recursion",
        hook: "pricing",
        config: json!({"big_frames": true}),
        kinds: &["trap", "stack", "memory"],
        dry_run_fails: true,
    };
    contained(backend, bad).await;
}

async fn panic_is_a_trap(backend: Backend) {
    let bad = Bad {
        component: "panic",
        hook: "pricing",
        config: json!({}),
        kinds: &["trap"],
        dry_run_fails: true,
    };
    contained(backend, bad).await;
}

async fn huge_output_is_refused(backend: Backend) {
    let bad = Bad {
        component: "huge_output",
        hook: "pricing",
        config: json!({}),
        // Which limit stops it first depends on the machine's speed: on a
        // slow one the 100 ms time limit comes before fuel or memory.
        kinds: &["invalid_output", "memory", "fuel", "time"],
        dry_run_fails: true,
    };
    contained(backend, bad).await;
}

async fn huge_error_text_is_a_bounded_failure(backend: Backend) {
    let bad = Bad {
        component: "huge_output",
        hook: "pricing",
        config: json!({"error_bytes": 1_000_000}),
        kinds: &["error"],
        dry_run_fails: true,
    };
    contained(backend, bad).await;
}

async fn invalid_output_is_refused(backend: Backend) {
    let bad = Bad {
        component: "invalid_output",
        hook: "pricing",
        config: json!({}),
        kinds: &["invalid_output"],
        dry_run_fails: true,
    };
    contained(backend, bad).await;
}

async fn negative_price_is_refused(backend: Backend) {
    let bad = Bad {
        component: "invalid_output",
        hook: "pricing",
        config: json!({"negative": true}),
        kinds: &["invalid_output"],
        dry_run_fails: true,
    };
    contained(backend, bad).await;
}

async fn invalid_discount_is_refused(backend: Backend) {
    let bad = Bad {
        component: "invalid_discount",
        hook: "promotion",
        config: json!({}),
        kinds: &["invalid_output"],
        dry_run_fails: true,
    };
    contained(backend, bad).await;
}

/// A discount larger than its line is well-formed, so only the pipeline
/// (which knows the line) refuses it.
async fn discount_beyond_the_line_is_refused(backend: Backend) {
    let bad = Bad {
        component: "invalid_discount",
        hook: "promotion",
        config: json!({"kind": "line"}),
        kinds: &["invalid_output"],
        dry_run_fails: false,
    };
    contained(backend, bad).await;
}

/// The snooping guest runs, but finds no file, no environment, no arguments,
/// no network, a clock fixed at the request's time and zero randomness.
async fn wasi_snoop_sees_nothing(backend: Backend) {
    let Some(wasm) = component("wasi_snoop") else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    // 1,000.00, so that the snoop's 0.01 % order discount is 0.10.
    let product = id_of(&app.product(&seller, "Piano", 100_000, 10).await);
    let plugin = app
        .install_plugin(&app.admin, "snoop", "promotion", &wasm, json!({}))
        .await;

    let sample =
        json!({"lines": [{"quantity": 1, "unit_price": 100_000}], "now_ms": 1_700_000_000_000i64});
    let report = app
        .dry_run(&app.admin, id_of(&plugin), sample.clone())
        .await;
    report.expect(200);
    let report = report.body;
    assert_eq!(report["failure"], Value::Null, "{report}");
    let logged = report["logs"][0]["message"].as_str().unwrap();
    for found in [
        "file: error (",
        "env: 0 vars []",
        "args: []",
        "clock ms: 1700000000000",
        "net: error (",
    ] {
        assert!(logged.contains(found), "{found:?} not in {logged:?}");
    }
    assert!(!logged.contains("root:"), "{logged}");
    let again = app.dry_run(&app.admin, id_of(&plugin), sample).await;
    assert_eq!(
        again.body["output"], report["output"],
        "the same input gives the same output"
    );
    assert_eq!(again.body["logs"], report["logs"]);

    let alice = app.customer().await;
    app.put_item(&alice, product, 1).await.expect(200);
    let cart = app.cart_view(&alice).await;
    assert_eq!(cart["violations"], json!([]), "{cart}");
    let label = cart["adjustments"][0]["label"].as_str().unwrap();
    assert!(
        label.starts_with("file: error (") && label.contains("env: 0 vars"),
        "{label}"
    );
    assert_eq!(cart["adjustments"][0]["amount"], -10);
    let order = app.place_order(&alice).await;
    assert_eq!(order["total"], cart["total"], "{order}");
    assert_ran(&order, &[(&plugin, "applied")]);
}

/// A plugin that logs 10,000 lines keeps at most the bounded number; the
/// rest are counted as dropped, and the call still succeeds.
async fn chatty_logger_is_bounded(backend: Backend) {
    let Some(wasm) = component("chatty_logger") else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Radio", 5_000, 10).await);
    let plugin = app
        .install_plugin(&app.admin, "chatty", "pricing", &wasm, json!({}))
        .await;
    let report = app
        .dry_run(
            &app.admin,
            id_of(&plugin),
            json!({"lines": [{"quantity": 1, "unit_price": 5_000}]}),
        )
        .await;
    report.expect(200);
    let report = report.body;
    assert_eq!(report["failure"], Value::Null, "{report}");
    assert_eq!(report["output"], json!({"price_changes": []}));
    let kept = report["logs"].as_array().unwrap();
    let dropped = report["logs_dropped"].as_u64().unwrap();
    assert!(
        !kept.is_empty() && kept.len() <= 100,
        "{} lines kept",
        kept.len()
    );
    assert!(dropped > 0, "{report}");
    assert_eq!(kept.len() as u64 + dropped, 10_000);
    let kept_bytes: usize = kept
        .iter()
        .map(|l| l["message"].as_str().unwrap().len())
        .sum();
    assert!(kept_bytes <= 16 << 10, "{kept_bytes} bytes of logs kept");

    let alice = app.customer().await;
    app.put_item(&alice, product, 1).await.expect(200);
    let cart = app.cart_view(&alice).await;
    assert_eq!(cart["violations"], json!([]), "{cart}");
    let order = app.place_order(&alice).await;
    assert_charged_as_shown(&order, &cart);
    assert_ran(&order, &[(&plugin, "applied")]);
}

/// The largest component these apps accept, in KiB: the examples' small
/// components fit, `promo_codes` (about 160 KB) does not.
const MAX_KIB: usize = 128;

fn small_uploads(config: &mut shopeezy_host::Config) {
    config.plugin_max_kib = MAX_KIB;
}

#[track_caller]
fn expect_invalid_component<'a>(reply: &'a Reply, reason_has: &str) -> &'a str {
    reply.expect_problem(422, "invalid_component");
    let reason = reply.body["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(reason_has),
        "reason {reason:?} should say {reason_has:?}"
    );
    reason
}

async fn invalid_uploads_are_refused_with_the_reason(backend: Backend) {
    let Some([sale, pricing, codes]) = components(["attribute_sale", "panic", "promo_codes"])
    else {
        return;
    };
    assert!(sale.len() < MAX_KIB << 10 && codes.len() > MAX_KIB << 10);
    let Some(app) = spawn_app_with(backend, host_options(small_uploads)).await else {
        return;
    };
    let seller = app.seller().await;
    let random: Vec<u8> = (0..256).flat_map(|_| *Uuid::new_v4().as_bytes()).collect();
    // The smallest core wasm module: a module, not a component.
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    let promotion = manifest("upload", "promotion", json!({}));

    expect_invalid_component(
        &app.upload_plugin(&seller, &promotion, &random).await,
        "not a valid component",
    );
    expect_invalid_component(&app.upload_plugin(&seller, &promotion, b"").await, "");
    expect_invalid_component(
        &app.upload_plugin(&seller, &promotion, &core_module).await,
        "not a valid component",
    );
    // A promotion component is not a pricing one, and the other way round.
    expect_invalid_component(
        &app.upload_plugin(&seller, &manifest("upload", "pricing", json!({})), &sale)
            .await,
        "not a component of the `pricing` world",
    );
    expect_invalid_component(
        &app.upload_plugin(&seller, &promotion, &pricing).await,
        "not a component of the `promotion` world",
    );
    expect_invalid_component(
        &app.upload_plugin(&seller, &manifest("upload", "validation", json!({})), &sale)
            .await,
        "not a component of the `validation` world",
    );
    let oversized = app.upload_plugin(&seller, &promotion, &codes).await;
    let reason = expect_invalid_component(&oversized, "the limit is");
    assert!(
        reason.contains(&codes.len().to_string()) && reason.contains(&(MAX_KIB << 10).to_string()),
        "the reason says how big and how much is allowed: {reason}"
    );
    assert!(
        app.listed_plugins(&seller).await.is_empty(),
        "nothing installed"
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM plugins", None).await,
        0,
        "no row"
    );

    // A new version is checked the same way; the installed one stays.
    let plugin = app
        .install_plugin(&seller, "upload", "promotion", &sale, json!({}))
        .await;
    let id = id_of(&plugin);
    expect_invalid_component(
        &app.replace_component(&seller, id, &random).await,
        "not a valid component",
    );
    expect_invalid_component(
        &app.replace_component(&seller, id, &pricing).await,
        "not a component of the `promotion` world",
    );
    expect_invalid_component(
        &app.replace_component(&seller, id, &codes).await,
        "the limit is",
    );
    let kept = app.get_plugin(&seller, id).await;
    kept.expect(200);
    assert_eq!(kept.body, plugin, "still version 1, unchanged");
    // A new, valid version is version 2.
    let replaced = app.replace_component(&seller, id, &sale).await;
    replaced.expect(200);
    assert_eq!(replaced.body["version"], 2);
    assert_eq!(replaced.body["sha256"], plugin["sha256"]);
}

async fn bad_manifests_are_refused(backend: Backend) {
    let Some([sale]) = components(["attribute_sale"]) else {
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let upload = |manifest: &str, parts: bool| {
        let manifest = manifest.to_owned();
        let request = app.host_as(&seller, Method::POST, "/v1/plugins");
        let sale = sale.clone();
        async move {
            let form = if parts {
                upload_form(&manifest, &sale)
            } else {
                reqwest::multipart::Form::new().text("manifest", manifest)
            };
            send(request.multipart(form)).await
        }
    };
    let long_name = format!(r#"{{"name":"{}","hook":"promotion"}}"#, "a".repeat(65));
    for (manifest, code) in [
        (r#"{"name":"x","hook":"shipping"}"#, "invalid_manifest"),
        (
            r#"{"name":"x","hook":"promotion","colour":"red"}"#,
            "invalid_manifest",
        ),
        (r#"{"hook":"promotion"}"#, "invalid_manifest"),
        (
            r#"{"name":"x","hook":"promotion","failure_policy":"sometimes"}"#,
            "invalid_manifest",
        ),
        (r#"not json"#, "invalid_manifest"),
        (
            r#"{"name":"Bad Name!","hook":"promotion"}"#,
            "validation_failed",
        ),
        (r#"{"name":"","hook":"promotion"}"#, "validation_failed"),
        (long_name.as_str(), "validation_failed"),
        (
            r#"{"name":"x","hook":"promotion","priority":20000}"#,
            "validation_failed",
        ),
    ] {
        let reply = upload(manifest, true).await;
        reply.expect_problem(422, code);
        assert!(
            reply.body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{manifest}: {}",
            reply.body
        );
    }
    upload(r#"{"name":"x","hook":"promotion"}"#, false)
        .await
        .expect_problem(422, "invalid_body");
    assert!(
        app.listed_plugins(&seller).await.is_empty(),
        "nothing installed"
    );

    // Settings are checked too.
    let plugin = app
        .install_plugin(&seller, "sale", "promotion", &sale, json!({}))
        .await;
    let id = id_of(&plugin);
    for body in [
        json!({"colour": "red"}),
        json!({"priority": -20000}),
        json!({"failure_policy": "sometimes"}),
        json!({"enabled": "yes"}),
    ] {
        app.patch_plugin(&seller, id, body)
            .await
            .expect_client_error();
    }
    assert_eq!(app.get_plugin(&seller, id).await.body, plugin, "unchanged");
}
