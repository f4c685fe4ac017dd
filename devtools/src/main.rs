//! `shopeezy-devtools`: what `cargo xtask run` and `cargo xtask bench` run
//! once cargo has built the services. It is built with them, in the same
//! cargo invocation, so that nothing is compiled twice; `xtask` itself
//! depends on no crate of the workspace.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod ceiling;
mod cpu;
mod seed;
mod services;
mod soak;
mod wire;

#[derive(Parser)]
#[command(
    name = "shopeezy-devtools",
    about = "Shopeezy's demo and benchmarks (run them through cargo xtask)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the system on its embedded defaults with the demo store.
    Run {
        /// The built plugin components (`cargo xtask plugins`).
        #[arg(long)]
        plugins: PathBuf,
    },
    /// Measure checkout, carts, auth and plugins; write bench/results/.
    Bench {
        /// The full run (else the quick one).
        #[arg(long)]
        full: bool,
        /// Only these backends (comma-separated): `postgres`, `pgbouncer`
        /// (PostgreSQL through PgBouncer in transaction pooling), `mysql`
        /// (MariaDB/MySQL at 127.0.0.1:3306, user root), `sqlite`.
        #[arg(long)]
        backend: Option<String>,
        /// Write `bench/results/<NAME>.{md,json}` instead of `quick` or `full`.
        #[arg(long, value_name = "NAME")]
        out: Option<String>,
        /// The built plugin components.
        #[arg(long)]
        plugins: PathBuf,
    },
    /// A steady checkout load for `minutes`, reporting memory growth.
    Soak {
        /// How long, in minutes (at least 2).
        #[arg(long)]
        minutes: u64,
        /// Only this backend: `postgres`, `pgbouncer`, `mysql` or `sqlite`.
        #[arg(long)]
        backend: Option<String>,
    },
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Cmd::Run { plugins } => services::run(&plugins),
        Cmd::Bench {
            full,
            backend,
            out,
            plugins,
        } => bench::run(full, backend.as_deref(), out.as_deref(), &plugins),
        Cmd::Soak { minutes, backend } => soak::run(minutes, backend.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shopeezy-devtools: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The repository's root (where `bench/results/` and `data/` live).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The backends a run measures: `--backend` (one, or several separated by
/// commas), else all four (PgBouncer when installed, MySQL when a server
/// answers at 127.0.0.1:3306).
fn backends(backend: Option<&str>) -> anyhow::Result<Vec<&str>> {
    Ok(match backend {
        Some(list) => {
            let mut chosen = Vec::new();
            for b in list.split(',') {
                match b {
                    "postgres" | "pgbouncer" | "mysql" | "sqlite" => chosen.push(b),
                    other => {
                        anyhow::bail!(
                            "unknown backend {other}: postgres, pgbouncer, mysql or sqlite"
                        )
                    }
                }
            }
            chosen
        }
        None => {
            let mut all = vec!["postgres"];
            if services::pgbouncer_available() {
                all.push("pgbouncer");
            } else {
                eprintln!(
                    "pgbouncer is not installed: no run through it (Debian: apt install pgbouncer)"
                );
            }
            if services::mysql_available() {
                all.push("mysql");
            } else {
                eprintln!("no MySQL/MariaDB server answers at 127.0.0.1:3306: no run on it");
            }
            all.push("sqlite");
            all
        }
    })
}
