//! The local runner (`cargo xtask plugin run`) reports what `dry-run` does:
//! the same output (or failure), fuel and logs for the same sample cart. The
//! runner is called in-process, through the library code it is made of
//! (`xtask/src/runner.rs`): `Runtime::new(Limits::default())`, `compile`,
//! `SampleCart::to_input`, `call`, `Report::new`.

use serde_json::{Value, json};
use shopeezy_host::plugins::io::{Report, SampleCart};
use shopeezy_host::plugins::limits::Limits;
use shopeezy_host::plugins::runtime::{Hook, Runtime};
use uuid::Uuid;

use crate::helpers::{Backend, id_of, spawn_app};
use crate::plugin_helpers::components;

both_backends!(the_local_runner_reports_what_dry_run_does);

/// What the runner prints for `wasm` as a `hook` plugin with `config` on `sample`.
fn run_locally(wasm: &[u8], hook: &str, config: &Value, sample: &Value) -> Value {
    let hook = Hook::parse(hook).unwrap();
    let sample: SampleCart = serde_json::from_value(sample.clone()).unwrap();
    let runtime = Runtime::new(Limits::default()).unwrap();
    let compiled = runtime
        .compile(hook, wasm)
        .unwrap_or_else(|reason| panic!("the runner refuses the component: {reason}"));
    let cart = sample.to_input(&config.to_string(), 1_700_000_000_000);
    let report = Report::new(
        runtime.call(&compiled, &cart),
        runtime.limits.fuel(cart.lines.len()),
    );
    serde_json::to_value(&report).unwrap()
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
