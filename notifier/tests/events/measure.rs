//! Measurements, not checks (ignored by default):
//!
//! ```sh
//! cargo test -p shopeezy-notifier --test events measure -- --ignored --nocapture --test-threads 1
//! ```
//!
//! - relay throughput: a backlog of `SHOPEEZY_BENCH_EVENTS` (default 20000)
//!   events is written to a host outbox, then one relay drains it to
//!   RabbitMQ with publisher confirms; events per second until the last row
//!   is marked sent.
//! - commit → consumer delay: checkouts through the real host; for each
//!   `order.placed`, the time from the event's `time` (taken inside the
//!   checkout transaction, just before its commit) to its arrival at a
//!   consumer of the exchange; p50 and p99.

use std::time::{Duration, Instant};

use futures::StreamExt;
use shopeezy_common::events::Relay;
use shopeezy_common::insert_event;
use shopeezy_common::outbox::Event;
use shopeezy_common::shutdown::Shutdown;
use shopeezy_testkit::Storage;

use crate::helpers::{Backend, Options, TestBroker, relay_settings, spawn};

fn bench_events() -> usize {
    std::env::var("SHOPEEZY_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn measure_relay_throughput() {
    for backend in [Backend::Embedded, Backend::Production] {
        relay_throughput(backend).await;
    }
}

async fn relay_throughput(backend: Backend) {
    let Some(broker) = TestBroker::new().await else {
        return;
    };
    let Some(storage) = Storage::new(backend).await else {
        return;
    };
    let Some(config) = shopeezy_testkit::host::config(&storage).await else {
        return;
    };
    // Built, never run: its own relay does not start.
    let host = shopeezy_host::Application::build(config).await.unwrap();
    let db = host.state().db.clone();
    let n = bench_events();
    for chunk in 0..n.div_ceil(1000) {
        shopeezy_common::with_db!(&db, pool => {
            let mut tx = pool.begin().await.unwrap();
            for i in chunk * 1000..((chunk + 1) * 1000).min(n) {
                let event = Event::new(
                    "/bench",
                    "bench.event",
                    format!("bench/{i}"),
                    serde_json::json!({"i": i, "padding": "x".repeat(400)}),
                );
                insert_event!(&mut *tx, &event).unwrap();
            }
            tx.commit().await.unwrap();
        });
    }
    let mut queue = broker.queue(&["bench.#"]).await;
    let relay = Relay::new(
        db.clone(),
        relay_settings(Some(&broker.url), &broker.exchange).relay_config("bench"),
    );
    let stop = Shutdown::new();
    let started = Instant::now();
    relay.spawn(stop.wait());
    let unsent_sql = "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL";
    loop {
        let unsent: i64 = shopeezy_common::with_db!(&db, pool => sqlx::query_scalar(unsent_sql).fetch_one(pool).await.unwrap());
        if unsent == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "too slow");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drained = started.elapsed();
    let got = queue.take(n, Duration::from_secs(60)).await;
    let consumed = started.elapsed();
    assert_eq!(got.len(), n);
    stop.trigger();
    eprintln!(
        "relay throughput ({backend:?}): {n} events (~0.5 KiB) published with confirms and marked sent in {:.2} s = {:.0} events/s; all consumed after {:.2} s",
        drained.as_secs_f64(),
        n as f64 / drained.as_secs_f64(),
        consumed.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement; run with --ignored --nocapture"]
async fn measure_commit_to_consumer_delay() {
    for backend in [Backend::Embedded, Backend::Production] {
        for concurrency in [1, 8] {
            commit_to_consumer(backend, concurrency).await;
        }
    }
}

async fn commit_to_consumer(backend: Backend, concurrency: usize) {
    let Some(broker) = TestBroker::new().await else {
        return;
    };
    let mut queue = broker.queue(&["order.placed"]).await;
    let Some(app) = spawn(Options::on(&broker, backend)).await else {
        return;
    };
    let seller = app.seller().await;
    let product = app.product(&seller, 100, 1_000_000).await;
    let shoppers = futures::stream::iter(0..concurrency)
        .map(|_| app.customer())
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
    let per_shopper = 300 / concurrency;
    let orders = per_shopper * concurrency;
    let consumer = tokio::spawn(async move {
        let got = queue.take(orders, Duration::from_secs(120)).await;
        got.iter()
            .map(|m| {
                let time: chrono::DateTime<chrono::Utc> =
                    m.body["time"].as_str().unwrap().parse().unwrap();
                (m.received_at - time).to_std().unwrap_or_default()
            })
            .collect::<Vec<Duration>>()
    });
    let started = Instant::now();
    futures::future::join_all(shoppers.iter().map(|shopper| {
        let api = app.api.clone();
        async move {
            for _ in 0..per_shopper {
                api.order(0, shopper, product, 1).await;
            }
        }
    }))
    .await;
    let elapsed = started.elapsed();
    let mut delays = consumer.await.unwrap();
    assert_eq!(delays.len(), orders);
    delays.sort();
    let pct = |p: f64| delays[((delays.len() as f64 * p) as usize).min(delays.len() - 1)];
    eprintln!(
        "commit → consumer ({backend:?}, {concurrency} concurrent shoppers, {orders} checkouts in {:.1} s): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        elapsed.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        delays[delays.len() - 1].as_secs_f64() * 1e3,
    );
}
