//! The ceiling of a checkout on PostgreSQL: the SQL one shopper iteration
//! sends (`bench/pgbench/checkout.sql`), driven by `pgbench` against the
//! host's own database in the same run, with no HTTP, tokens or Rust in
//! between. `cargo xtask bench` sets the checkout's throughput beside it.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::root;

/// Whether `pgbench` is on this machine.
pub fn available() -> bool {
    Command::new("pgbench")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn psql(url: &str, sql: &str) -> Result<()> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-qc", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Numbers the catalog's products (skus `SKU-…`) from 0 for the script.
pub fn prepare(url: &str) -> Result<usize> {
    psql(
        url,
        "DROP TABLE IF EXISTS bench_catalog;
         CREATE TABLE bench_catalog AS
           SELECT (row_number() OVER (ORDER BY id) - 1)::int AS n, id FROM products
            WHERE sku LIKE 'SKU-%' AND deleted_at IS NULL;
         ALTER TABLE bench_catalog ADD PRIMARY KEY (n);
         ANALYZE bench_catalog;",
    )?;
    let out = Command::new("psql")
        .args([url, "-tAc", "SELECT count(*) FROM bench_catalog"])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// Drops what [`prepare`] made.
pub fn finish(url: &str) -> Result<()> {
    psql(url, "DROP TABLE IF EXISTS bench_catalog")
}

/// Runs the script with `clients` shoppers for `seconds`; throughput,
/// latency percentiles (from pgbench's per-transaction log), failures and retries.
pub fn run(url: &str, catalog: usize, clients: usize, seconds: u64) -> Result<Value> {
    let logs = std::env::temp_dir().join(format!(
        "shopeezy-pgbench-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&logs)?;
    let script = root().join("bench").join("pgbench").join("checkout.sql");
    let out = Command::new("pgbench")
        .args(["-n", "-M", "prepared", "--max-tries", "20", "-l"])
        .arg(format!("--log-prefix={}", logs.join("tx").display()))
        .arg("-D")
        .arg(format!("catalog={catalog}"))
        .arg("-c")
        .arg(clients.to_string())
        .arg("-j")
        .arg(clients.min(2).to_string())
        .arg("-T")
        .arg(seconds.to_string())
        .arg("-f")
        .arg(&script)
        .arg(url)
        .output()
        .context("running pgbench")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        bail!(
            "pgbench failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let field = |prefix: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    };
    let tps = field("tps =").context("pgbench printed no tps")?;
    let (mut micros, failed) = read_logs(&logs)?;
    let _ = std::fs::remove_dir_all(&logs);
    micros.sort_unstable();
    let pct = |p: f64| crate::bench::millis_at(&micros, p);
    Ok(json!({
        "tps": (tps * 10.0).round() / 10.0,
        "transactions": field("number of transactions actually processed:").unwrap_or(0.0),
        "failed": failed,
        "retried": field("number of transactions retried:").unwrap_or(0.0),
        "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
    }))
}

/// Latencies (µs) of the committed transactions, and how many failed, from
/// pgbench's logs: `client tx latency_us script epoch_s epoch_us [retries]`,
/// with `failed`/`serialization`/`deadlock` in place of the latency for a failure.
fn read_logs(dir: &Path) -> Result<(Vec<u64>, u64)> {
    let mut micros = Vec::new();
    let mut failed = 0;
    for entry in std::fs::read_dir(dir)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for line in text.lines() {
            if let Some(latency) = line.split_whitespace().nth(2) {
                match latency.parse::<u64>() {
                    Ok(us) => micros.push(us),
                    Err(_) => failed += 1,
                }
            }
        }
    }
    Ok((micros, failed))
}
