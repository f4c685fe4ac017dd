//! Micro-benchmarks of the plugin runtime, with criterion: instantiate and
//! call each example plugin (a fresh store and instance per call, as the
//! server does), and the whole pricing pipeline with all four examples
//! installed versus none, at 1, 10, 100 and 1,000 cart lines.
//!
//! ```text
//! cargo xtask plugins                                  # the example components
//! cargo bench -p shopeezy-devtools --bench plugins     # criterion's report
//! ```
//!
//! The fixtures are `shopeezy_devtools::fixtures`; `cargo xtask bench`
//! reports single-call percentiles from the same fixtures.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use shopeezy_devtools::fixtures::{self as bench, LINES};
use shopeezy_host::plugins::limits::Limits;
use shopeezy_host::plugins::runtime::Runtime;

fn components() -> PathBuf {
    std::env::var_os("SHOPEEZY_TEST_PLUGINS_DIR").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../plugins/target/wasm32-wasip2/release")
        },
        PathBuf::from,
    )
}

fn bench_calls(c: &mut Criterion) {
    let runtime = Runtime::new(Limits::default()).expect("runtime");
    for (name, compiled, config) in bench::compiled(&runtime, &components()).expect("examples") {
        let mut group = c.benchmark_group(format!("instantiate_and_call/{name}"));
        for lines in LINES {
            let cart = bench::plugin_cart(lines, config);
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
        let pipeline = rt
            .block_on(bench::pipeline(&components(), with))
            .expect("pipeline");
        let customer = bench::customer();
        let mut group = c.benchmark_group(format!("pipeline/{label}"));
        for lines in LINES {
            let cart = bench::store_cart(lines);
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

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    bench_calls(&mut c);
    bench_pipeline(&mut c);
    c.final_summary();
}
