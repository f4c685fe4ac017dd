//! Fixtures and figures of the plugin micro-benchmarks: the example plugins
//! with a merchant config each, carts of any size, a pricing pipeline with
//! the examples installed or none, and single-call percentiles.
//!
//! `cargo xtask bench` reports [`percentiles`] (the `shopeezy-devtools`
//! binary links the host library built like the server);
//! `devtools/benches/plugins.rs` runs criterion on the same fixtures
//! (`cargo xtask bench --full`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shopeezy_common::db::Db;
use uuid::Uuid;

use shopeezy_host::domain::{Cart, FailurePolicy, Line, NewPlugin, Product, Role};
use shopeezy_host::plugins::io::SampleCart;
use shopeezy_host::plugins::limits::Limits;
use shopeezy_host::plugins::registry::Registry;
use shopeezy_host::plugins::runtime::{self, Compiled, Hook, Runtime};
use shopeezy_host::pricing::{Customer, Pipeline};

/// Cart sizes every benchmark runs at.
pub const LINES: [usize; 4] = [1, 10, 100, 1000];

/// The examples, their hooks and a merchant config each.
pub const EXAMPLES: [(&str, Hook, &str); 4] = [
    (
        "volume-pricing",
        Hook::Pricing,
        r#"{"tiers":[{"min_quantity":3,"percent_off":5}]}"#,
    ),
    ("attribute-sale", Hook::Promotion, "{}"),
    (
        "promo-codes",
        Hook::Promotion,
        r#"{"codes":[{"code":"SAVE10","percent":1000}]}"#,
    ),
    (
        "purchase-limits",
        Hook::Validation,
        r#"{"max_per_product":100}"#,
    ),
];

/// The bytes of example `name` in `dir` (as `cargo xtask plugins` builds them).
pub fn component(dir: &Path, name: &str) -> anyhow::Result<Vec<u8>> {
    let path = dir.join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).map_err(|e| {
        anyhow::anyhow!(
            "{}: {e}; build the example plugins first: cargo xtask plugins",
            path.display()
        )
    })
}

/// A plugin's input for a cart of `lines` lines (tagged, on sale, with a code).
pub fn plugin_cart(lines: usize, config: &str) -> runtime::Cart {
    let sample = json!({
        "lines": (0..lines).map(|i| json!({"product_id": Uuid::now_v7().to_string(), "sku": format!("SKU-{i}"),
            "seller_id": "019ab2a4-5f0e-7c3b-9a41-2f0e6c1d8b7a", "quantity": 1 + i % 5, "unit_price": 1000 + i,
            "tags": ["bench", "coffee"], "attributes": {"sale_percent": "10"}})).collect::<Vec<_>>(),
        "codes": ["SAVE10"],
    });
    serde_json::from_value::<SampleCart>(sample)
        .map(|s| s.to_input(config, 0))
        .unwrap_or_else(|e| unreachable!("the sample cart is valid: {e}"))
}

/// A stored cart of `lines` lines, as the pipeline reads it.
pub fn store_cart(lines: usize) -> Cart {
    let seller = Uuid::now_v7();
    let now = chrono::Utc::now();
    Cart {
        lines: (0..lines)
            .map(|i| Line {
                product: Product {
                    id: Uuid::now_v7(),
                    seller_id: seller,
                    sku: format!("SKU-{i}"),
                    name: format!("Product {i}"),
                    description: String::new(),
                    price: 1000 + i as i64,
                    currency: "USD".into(),
                    stock: 1_000_000,
                    tags: vec!["bench".into(), "coffee".into()],
                    attributes: BTreeMap::from([("sale_percent".into(), "10".into())]),
                    created_at: now,
                    updated_at: now,
                },
                quantity: 1 + (i % 5) as i64,
            })
            .collect(),
        codes: vec!["SAVE10".into()],
    }
}

/// The examples compiled by `runtime`, with their configs.
pub fn compiled(
    runtime: &Runtime,
    dir: &Path,
) -> anyhow::Result<Vec<(&'static str, Compiled, &'static str)>> {
    EXAMPLES
        .iter()
        .map(|(name, hook, config)| {
            let c = runtime
                .compile(*hook, &component(dir, name)?)
                .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
            Ok((*name, c, *config))
        })
        .collect()
}

/// A pipeline over an in-memory database, with the examples installed or none.
pub async fn pipeline(dir: &Path, with_examples: bool) -> anyhow::Result<Pipeline> {
    let db = Db::connect("sqlite::memory:", 1, shopeezy_host::store::migrations()).await?;
    let registry = Registry::load(db, Runtime::new(Limits::default())?).await?;
    if with_examples {
        for (name, hook, config) in EXAMPLES {
            let bytes = component(dir, name)?;
            let (_, sha) = registry
                .compile(hook, bytes.clone())
                .await
                .map_err(|e| anyhow::anyhow!("{name}: {e:?}"))?;
            let new = NewPlugin {
                name: name.into(),
                hook,
                seller_id: None,
                priority: 0,
                failure_policy: FailurePolicy::Closed,
                config: serde_json::from_str(config)?,
            };
            registry
                .install(new, &bytes, &sha)
                .await
                .map_err(|e| anyhow::anyhow!("{name}: {e:?}"))?;
        }
    }
    Ok(Pipeline::new(registry))
}

/// A returning customer.
pub fn customer() -> Customer {
    Customer {
        id: Uuid::now_v7(),
        role: Role::Customer,
        order_count: 3,
    }
}

/// p50 and p99 of `calls` single timings of `f` (after a warm-up), in µs.
fn timings(calls: usize, mut f: impl FnMut() -> anyhow::Result<Duration>) -> anyhow::Result<Value> {
    for _ in 0..calls.min(100) {
        f()?;
    }
    let mut nanos = Vec::with_capacity(calls);
    for _ in 0..calls {
        nanos.push(f()?.as_nanos() as u64);
    }
    nanos.sort_unstable();
    let pct = |p: f64| {
        let i = ((nanos.len().max(1) - 1) as f64 * p).round() as usize;
        let us = nanos.get(i).copied().unwrap_or(0) as f64 / 1000.0;
        (us * 10.0).round() / 10.0
    };
    Ok(json!({"p50_us": pct(0.50), "p99_us": pct(0.99), "calls": calls}))
}

/// Instantiate-and-call p50/p99 of each example at each cart size (with
/// the fuel it used), and of the pricing pipeline with all examples versus
/// none: `{"plugins": {name: {lines: …}}, "pipeline": {"none"|"all_examples": {lines: …}}}`.
/// `calls` per figure, a tenth of it at 1,000 lines.
pub fn percentiles(dir: &Path, calls: usize) -> anyhow::Result<Value> {
    let calls_at = |lines: usize| if lines >= 1000 { calls / 10 } else { calls }.max(1);
    let runtime = Runtime::new(Limits::default())?;
    let mut plugins = serde_json::Map::new();
    for (name, compiled, config) in compiled(&runtime, dir)? {
        let mut sizes = serde_json::Map::new();
        for lines in LINES {
            let cart = plugin_cart(lines, config);
            let mut fuel = 0;
            let mut figures = timings(calls_at(lines), || {
                let report = runtime.call(&compiled, &cart);
                if let Err(e) = &report.result {
                    anyhow::bail!("{name} failed: {e:?}");
                }
                fuel = report.fuel_used;
                Ok(report.elapsed)
            })?;
            figures["fuel"] = json!(fuel);
            sizes.insert(lines.to_string(), figures);
        }
        plugins.insert(name.to_owned(), Value::Object(sizes));
    }
    // As in the server: a multi-threaded runtime, the pipeline awaited in place.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let mut pipelines = serde_json::Map::new();
    for (label, with) in [("none", false), ("all_examples", true)] {
        let pipeline = rt.block_on(pipeline(dir, with))?;
        let customer = customer();
        let mut sizes = serde_json::Map::new();
        for lines in LINES {
            let cart = store_cart(lines);
            let figures = timings(calls_at(lines), || {
                let started = Instant::now();
                rt.block_on(pipeline.price(&cart, &customer, chrono::Utc::now()))
                    .map_err(|e| anyhow::anyhow!("pricing: {e:?}"))?;
                Ok(started.elapsed())
            })?;
            sizes.insert(lines.to_string(), figures);
        }
        pipelines.insert(label.to_owned(), Value::Object(sizes));
    }
    Ok(json!({"plugins": plugins, "pipeline": pipelines}))
}
