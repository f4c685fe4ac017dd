//! Micro-benchmarks of the plugin runtime, with criterion: instantiate and
//! call each example plugin (a fresh store and instance per call, as the
//! server does), and the whole pricing pipeline with all four examples
//! installed versus none, at 1, 10, 100 and 1,000 cart lines.
//!
//! ```text
//! cargo xtask plugins                                  # the example components
//! cargo bench -p shopeezy-host --bench plugins         # criterion's report
//! ```
//!
//! With `SHOPEEZY_BENCH_PERCENTILES=<file>` it times single calls instead
//! and writes their p50/p99 as JSON: `cargo xtask bench` reports those.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use serde_json::{Value, json};
use shopeezy_common::db::Db;
use shopeezy_host::auth::Role;
use shopeezy_host::plugins::io::SampleCart;
use shopeezy_host::plugins::limits::Limits;
use shopeezy_host::plugins::registry::{FailurePolicy, NewPlugin, Registry};
use shopeezy_host::plugins::runtime::{self, Compiled, Hook, Runtime};
use shopeezy_host::pricing::{Customer, Pipeline};
use shopeezy_host::store::carts::{Cart, Line};
use shopeezy_host::store::products::Product;
use uuid::Uuid;

/// Cart sizes every benchmark runs at.
const LINES: [usize; 4] = [1, 10, 100, 1000];

/// The examples, their hooks and a merchant config each.
const EXAMPLES: [(&str, Hook, &str); 4] = [
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

fn components() -> PathBuf {
    std::env::var_os("SHOPEEZY_TEST_PLUGINS_DIR").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../plugins/target/wasm32-wasip2/release")
        },
        PathBuf::from,
    )
}

fn component(name: &str) -> Vec<u8> {
    let path = components().join(format!("{}.wasm", name.replace('-', "_")));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the example plugins first: cargo xtask plugins",
            path.display()
        )
    })
}

/// A plugin's input for a cart of `lines` lines (tagged, on sale, with a code).
fn plugin_cart(lines: usize, config: &str) -> runtime::Cart {
    let sample: SampleCart = serde_json::from_value(json!({
        "lines": (0..lines).map(|i| json!({"product_id": format!("p{i}"), "sku": format!("SKU-{i}"), "seller_id": "s1",
            "quantity": 1 + i % 5, "unit_price": 1000 + i, "tags": ["bench", "coffee"], "attributes": {"sale_percent": "10"}})).collect::<Vec<_>>(),
        "codes": ["SAVE10"],
    }))
    .expect("a valid sample cart");
    sample.to_input(config, 0)
}

/// A stored cart of `lines` lines, as the pipeline reads it.
fn store_cart(lines: usize) -> Cart {
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

fn compiled(runtime: &Runtime) -> Vec<(&'static str, Compiled, &'static str)> {
    EXAMPLES
        .iter()
        .map(|(name, hook, config)| {
            let c = runtime
                .compile(*hook, &component(name))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            (*name, c, *config)
        })
        .collect()
}

/// A pipeline over an in-memory database, with the examples installed or none.
fn pipeline(rt: &tokio::runtime::Runtime, with_examples: bool) -> Pipeline {
    rt.block_on(async {
        let db = Db::connect("sqlite::memory:", 1, shopeezy_host::startup::migrations())
            .await
            .expect("an in-memory database");
        let registry = Registry::load(db, Runtime::new(Limits::default()).expect("runtime"))
            .await
            .expect("registry");
        if with_examples {
            for (name, hook, config) in EXAMPLES {
                let bytes = component(name);
                let (_, sha) = registry.compile(hook, bytes.clone()).await.expect(name);
                let new = NewPlugin {
                    name: name.into(),
                    hook,
                    seller_id: None,
                    priority: 0,
                    failure_policy: FailurePolicy::Closed,
                    config: serde_json::from_str(config).expect("config"),
                };
                registry.install(new, &bytes, &sha).await.expect(name);
            }
        }
        Pipeline::new(registry)
    })
}

fn customer() -> Customer {
    Customer {
        id: Uuid::now_v7(),
        role: Role::Customer,
        order_count: 3,
    }
}

fn bench_calls(c: &mut Criterion) {
    let runtime = Runtime::new(Limits::default()).expect("runtime");
    for (name, compiled, config) in compiled(&runtime) {
        let mut group = c.benchmark_group(format!("instantiate_and_call/{name}"));
        for lines in LINES {
            let cart = plugin_cart(lines, config);
            group.throughput(Throughput::Elements(lines as u64));
            group.bench_with_input(BenchmarkId::from_parameter(lines), &cart, |b, cart| {
                b.iter(|| {
                    let report = runtime.call(&compiled, black_box(cart));
                    assert!(report.result.is_ok(), "{name}: {:?}", report.result.err());
                    report
                });
            });
        }
        group.finish();
    }
}

fn bench_pipeline(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio");
    for (label, with) in [("none", false), ("all_examples", true)] {
        let pipeline = pipeline(&rt, with);
        let customer = customer();
        let mut group = c.benchmark_group(format!("pipeline/{label}"));
        for lines in LINES {
            let cart = store_cart(lines);
            group.throughput(Throughput::Elements(lines as u64));
            group.bench_with_input(BenchmarkId::from_parameter(lines), &cart, |b, cart| {
                b.iter(|| {
                    rt.block_on(pipeline.price(black_box(cart), &customer, chrono::Utc::now()))
                        .expect("priced")
                });
            });
        }
        group.finish();
    }
}

/// p50 and p99 of `calls` single timings of `f`, in microseconds.
fn percentiles(calls: usize, mut f: impl FnMut() -> Duration) -> Value {
    for _ in 0..calls.min(100) {
        f();
    }
    let mut nanos: Vec<u64> = (0..calls).map(|_| f().as_nanos() as u64).collect();
    nanos.sort_unstable();
    let pct = |p: f64| {
        let us = nanos[((nanos.len() as f64 - 1.0) * p).round() as usize] as f64 / 1000.0;
        (us * 10.0).round() / 10.0
    };
    json!({"p50_us": pct(0.50), "p99_us": pct(0.99), "calls": calls})
}

/// The figures `cargo xtask bench` reports: per example and cart size, and
/// the pipeline with all examples versus none.
fn write_percentiles(out: &str, calls: usize) {
    let runtime = Runtime::new(Limits::default()).expect("runtime");
    let mut plugins = serde_json::Map::new();
    for (name, compiled, config) in compiled(&runtime) {
        let mut sizes = serde_json::Map::new();
        for lines in LINES {
            let cart = plugin_cart(lines, config);
            let n = if lines >= 1000 { calls / 10 } else { calls };
            let mut fuel = 0;
            let mut figures = percentiles(n, || {
                let report = runtime.call(&compiled, &cart);
                assert!(report.result.is_ok(), "{name}: {:?}", report.result.err());
                fuel = report.fuel_used;
                report.elapsed
            });
            figures["fuel"] = json!(fuel);
            sizes.insert(lines.to_string(), figures);
        }
        plugins.insert(name.to_owned(), Value::Object(sizes));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio");
    let mut pipelines = serde_json::Map::new();
    for (label, with) in [("none", false), ("all_examples", true)] {
        let pipeline = Arc::new(pipeline(&rt, with));
        let customer = customer();
        let mut sizes = serde_json::Map::new();
        for lines in LINES {
            let cart = store_cart(lines);
            let n = if lines >= 1000 { calls / 10 } else { calls };
            let figures = percentiles(n, || {
                let started = Instant::now();
                rt.block_on(pipeline.price(&cart, &customer, chrono::Utc::now()))
                    .expect("priced");
                started.elapsed()
            });
            sizes.insert(lines.to_string(), figures);
        }
        pipelines.insert(label.to_owned(), Value::Object(sizes));
    }
    let report = json!({"plugins": plugins, "pipeline": pipelines});
    std::fs::write(out, serde_json::to_string_pretty(&report).expect("json"))
        .unwrap_or_else(|e| panic!("writing {out}: {e}"));
}

fn main() {
    if let Ok(out) = std::env::var("SHOPEEZY_BENCH_PERCENTILES") {
        let calls = std::env::var("SHOPEEZY_BENCH_CALLS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(2000);
        write_percentiles(&out, calls);
        return;
    }
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_calls(&mut c);
    bench_pipeline(&mut c);
    c.final_summary();
}
