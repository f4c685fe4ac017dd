//! `cargo xtask bench --soak MINUTES`: a steady load for a long while, to see
//! whether memory grows with the work done. Eight shoppers put a line in
//! their cart and check out, in a loop; every half minute the run reads each
//! service's resident memory (VmRSS) and the orders placed so far. The
//! figure is the slope of a least-squares line through those readings after
//! the first minute (allocators and caches warm up), in KiB per 100,000
//! orders: a service that keeps nothing per request reads about 0.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use serde_json::{Value, json};

use crate::bench::{self, Client};
use crate::services::Services;
use crate::{backends, root};

/// Shoppers in the loop.
const SHOPPERS: usize = 8;
/// How often memory is read.
const EVERY: Duration = Duration::from_secs(30);
/// Readings before this are not part of the slope.
const WARM_UP: Duration = Duration::from_secs(60);

/// Runs the soak on each backend for `minutes` and writes
/// `bench/results/soak.{md,json}`.
pub fn run(minutes: u64, backend: Option<&str>) -> Result<()> {
    if minutes < 2 {
        bail!("a soak needs at least 2 minutes (the first is warm-up)");
    }
    let backends = backends(backend)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut results = BTreeMap::new();
    for backend in backends {
        eprintln!("== soak on {backend}, {minutes} min");
        let result = runtime.block_on(soak_backend(backend, Duration::from_secs(minutes * 60)))?;
        results.insert(backend.to_owned(), result);
    }
    let report = json!({
        "command": format!("cargo xtask bench --soak {minutes}{}", backend.map_or(String::new(), |b| format!(" --backend {b}"))),
        "machine": bench::machine(),
        "shoppers": SHOPPERS,
        "backends": results,
    });
    let dir = root().join("bench").join("results");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("soak.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    let md = markdown(&report);
    std::fs::write(dir.join("soak.md"), &md)?;
    println!("{md}");
    println!("written to {}", dir.display());
    Ok(())
}

async fn soak_backend(backend: &str, length: Duration) -> Result<Value> {
    let (mut services, env, dir, c) = bench::start(backend).await?;
    let result = soak(&services, &c, length).await;
    services.stop();
    bench::drop_databases(&env);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn soak(services: &Services, c: &Arc<Client>, length: Duration) -> Result<Value> {
    let admin = c.login("admin@bench.local", "bench-admin-password").await?;
    let products = Arc::new(bench::catalog(c, &admin, 100).await?);
    let shoppers = Arc::new(bench::shoppers(c, SHOPPERS).await?);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut orders: u64 = 0;
    let mut errors_5xx: u64 = 0;
    let mut readings = vec![reading(services, 0, Duration::ZERO)];
    while started.elapsed() < length {
        let end = Instant::now() + EVERY.min(length - started.elapsed());
        let sample =
            bench::checkout_load(c, &shoppers, &products, SHOPPERS, end, &stop, false).await;
        orders += sample.statuses.get(&201).copied().unwrap_or(0);
        errors_5xx += sample
            .statuses
            .iter()
            .filter(|(s, _)| **s >= 500)
            .map(|(_, n)| n)
            .sum::<u64>();
        readings.push(reading(services, orders, started.elapsed()));
        eprintln!("  {:>4} s: {orders} orders", started.elapsed().as_secs());
    }
    let mut slopes = serde_json::Map::new();
    for (name, _) in services.pids() {
        let points: Vec<(f64, f64)> = readings
            .iter()
            .filter(|r| r["seconds"].as_f64().unwrap_or(0.0) >= WARM_UP.as_secs_f64())
            .filter_map(|r| Some((r["orders"].as_f64()?, r["rss_kib"][name].as_f64()?)))
            .collect();
        let per_100k = slope(&points).map(|s| (s * 100_000.0).round());
        slopes.insert(name.to_owned(), json!(per_100k));
    }
    Ok(json!({
        "minutes": (length.as_secs_f64() / 60.0 * 10.0).round() / 10.0,
        "orders": orders,
        "orders_per_s": (orders as f64 / started.elapsed().as_secs_f64()).round(),
        "errors_5xx": errors_5xx,
        "rss_kib_per_100k_orders": slopes,
        "readings": readings,
    }))
}

/// Each service's resident memory (KiB) beside the orders placed so far.
fn reading(services: &Services, orders: u64, at: Duration) -> Value {
    let mut rss = serde_json::Map::new();
    for (name, pid) in services.pids() {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        rss.insert(name.to_owned(), json!(kib));
    }
    json!({"seconds": at.as_secs(), "orders": orders, "rss_kib": rss})
}

/// The least-squares slope of `y` over `x`; `None` with fewer than two
/// distinct `x`.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (points.len() >= 2 && sxx > 0.0).then(|| sxy / sxx)
}

fn markdown(report: &Value) -> String {
    let mut md = format!(
        "# Soak\n\nCommand: `{}`. {} shoppers, each putting a line in its cart and checking out in a loop; resident memory read every {} s; slope after the first minute.\n\n",
        report["command"].as_str().unwrap_or_default(),
        SHOPPERS,
        EVERY.as_secs()
    );
    md.push_str("| backend | minutes | orders | orders/s | 5xx | host KiB per 100k orders | account KiB per 100k orders |\n|---|---|---|---|---|---|---|\n");
    if let Some(backends) = report["backends"].as_object() {
        for (name, b) in backends {
            md.push_str(&format!(
                "| {name} | {} | {} | {} | {} | {} | {} |\n",
                b["minutes"],
                b["orders"],
                b["orders_per_s"],
                b["errors_5xx"],
                b["rss_kib_per_100k_orders"]["host"],
                b["rss_kib_per_100k_orders"]["account"],
            ));
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::slope;

    #[test]
    fn slope_of_a_line() {
        let points = [(0.0, 10.0), (1.0, 12.0), (2.0, 14.0)];
        assert_eq!(slope(&points), Some(2.0));
        assert_eq!(slope(&[(1.0, 1.0)]), None);
    }
}
