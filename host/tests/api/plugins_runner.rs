//! The local runner (`shopeezy-host plugin run`, which `cargo xtask plugin
//! run` calls) reports what `dry-run` does: the same output (or failure),
//! fuel and logs for the same sample cart. The test runs the built binary
//! as a merchant would, on files, and reads what it prints.

use std::process::Command;

use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{Backend, id_of, spawn_app};
use crate::plugin_helpers::components;

every_backend!(the_local_runner_reports_what_dry_run_does);

/// Runs `shopeezy-host plugin run` on `wasm` as a `hook` plugin with
/// `config` on `sample`, with no `SHOPEEZY_*` setting (the default limits,
/// as the test's host has): its exit status, what it printed, what it said.
fn runner(wasm: &[u8], hook: &str, config: &Value, sample: &Value) -> (bool, String, String) {
    let dir = tempdir();
    let component = dir.join("plugin.wasm");
    let input = dir.join("cart.json");
    std::fs::write(&component, wasm).unwrap();
    std::fs::write(&input, sample.to_string()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_shopeezy-host"))
        .env_clear()
        .args(["plugin", "run"])
        .arg(&component)
        .args(["--hook", hook, "--input"])
        .arg(&input)
        .args(["--config", &config.to_string()])
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The report the runner prints (it exits 1 when the call failed).
fn run_locally(wasm: &[u8], hook: &str, config: &Value, sample: &Value) -> Value {
    let (_, stdout, stderr) = runner(wasm, hook, config, sample);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("the runner printed no report ({e}): {stdout}\n{stderr}"))
}

fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("shopeezy-runner-{}", Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_local_runner_refuses_what_the_server_refuses() {
    let sample = json!({"lines": []});
    // Not a component: the upload's 422, and nothing run.
    let (ok, stdout, stderr) = runner(b"\0asm not really", "pricing", &json!({}), &sample);
    assert!(!ok, "{stdout}");
    assert!(stderr.contains("422 invalid_component"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    // An unknown hook, a sample that is not a cart: clear errors.
    let (ok, _, stderr) = runner(b"", "checkout", &json!({}), &sample);
    assert!(!ok && stderr.contains("unknown hook"), "{stderr}");
    let (ok, _, stderr) = runner(b"", "pricing", &json!({}), &json!({"lines": "none"}));
    assert!(!ok && stderr.contains("is not a sample cart"), "{stderr}");
}

async fn the_local_runner_reports_what_dry_run_does(backend: Backend) {
    let Some([volume, sale, codes, limits, endless, chatty]) = components([
        "volume_pricing",
        "attribute_sale",
        "promo_codes",
        "purchase_limits",
        "endless_loop",
        "chatty_logger",
    ]) else {
        return;
    };
    // Default limits, as the runner's.
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let line = |sku: &str, quantity: u32, unit_price: i64| {
        json!({
            "product_id": Uuid::new_v4(), "sku": sku, "seller_id": seller.id,
            "quantity": quantity, "unit_price": unit_price,
            "tags": ["coffee"], "attributes": {"sale_percent": "15"},
        })
    };
    let sample = json!({
        "lines": [line("BEANS", 6, 1_999), line("MUG", 12, 850), line("FILTER", 1, 300)],
        "customer": {"id": Uuid::new_v4(), "role": "customer", "order_count": 0},
        "codes": ["SAVE10", "B2G1", "FIVEOFF"],
        "currency": "USD",
        "now_ms": 1_750_000_000_000i64,
    });
    let cases = [
        (
            "volume",
            "pricing",
            &volume,
            json!({"tiers": [{"min_quantity": 5, "percent_off": 5}, {"min_quantity": 10, "percent_off": 12}]}),
        ),
        ("sale", "promotion", &sale, json!({"max_percent": 50})),
        (
            "codes",
            "promotion",
            &codes,
            json!({"codes": [
                {"code": "SAVE10", "percent": 1000, "min_subtotal": 5000, "limit": {"total": 100, "per_customer": 1}},
                {"code": "FIVEOFF", "fixed": 500},
                {"code": "B2G1", "buy": 2, "get": 1, "tag": "coffee"},
                {"code": "LATER", "percent": 500, "valid_from": "2030-01-01"},
            ]}),
        ),
        (
            "limits",
            "validation",
            &limits,
            json!({"max_per_product": 10, "max_per_order": 15, "blocked_tags": ["coffee"]}),
        ),
        ("endless", "pricing", &endless, json!({})),
        ("chatty", "pricing", &chatty, json!({"lines": 500})),
    ];
    for (name, hook, wasm, config) in cases {
        let plugin = app
            .install_plugin(
                &app.admin,
                name,
                hook,
                wasm,
                json!({"config": config.clone()}),
            )
            .await;
        let served = app
            .dry_run(&app.admin, id_of(&plugin), sample.clone())
            .await;
        served.expect(200);
        let served = served.body;
        let local = run_locally(wasm, hook, &config, &sample);
        for member in [
            "output",
            "failure",
            "fuel_used",
            "fuel_limit",
            "logs",
            "logs_dropped",
        ] {
            assert_eq!(
                local[member], served[member],
                "{name}: the runner's {member} differs from dry-run's\nrunner:  {local}\ndry-run: {served}"
            );
        }
        let kind = served["failure"]["kind"].as_str();
        match name {
            "endless" => assert_eq!(kind, Some("fuel"), "{served}"),
            _ => {
                assert_eq!(kind, None, "{name}: {served}");
                assert!(served["output"].is_object(), "{served}");
            }
        }
        for member in ["time_us", "peak_memory_bytes"] {
            assert!(served[member].is_u64(), "{member}: {served}");
        }
        // A sample with its own config overrides the plugin's, on both sides.
        if name == "sale" {
            let mut own = sample.clone();
            own["config"] = json!({"max_percent": 5});
            let served = app.dry_run(&app.admin, id_of(&plugin), own.clone()).await;
            served.expect(200);
            let local = run_locally(wasm, hook, &json!({}), &own);
            assert_eq!(local["output"], served.body["output"]);
            assert_eq!(
                served.body["output"]["discounts"][0]["label"], "Sale 5%",
                "{}",
                served.body
            );
        }
    }

    // No such plugin; a sample that is not a cart.
    app.dry_run(&app.admin, Uuid::new_v4(), sample.clone())
        .await
        .expect_problem(404, "not_found");
    let plugin_id = app.listed_plugins(&app.admin).await[0];
    app.dry_run(
        &app.admin,
        plugin_id,
        json!({"lines": [{"quantity": 1, "unit_price": 1, "colour": "red"}]}),
    )
    .await
    .expect_client_error();
    app.dry_run(&app.admin, plugin_id, json!({"lines": "none"}))
        .await
        .expect_client_error();
}
