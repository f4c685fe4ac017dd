//! `cargo xtask <command>`: the project's own commands.
//!
//! - `run`: builds and starts the whole system on its embedded defaults
//!   (SQLite under `./data/`, in-process revocation and events) and prints
//!   where to reach it. Ctrl-C stops everything cleanly.
//! - `test`: runs every test. With `CI=true`, PostgreSQL, Redis and RabbitMQ
//!   are required and checked first; without it, tests that need a server
//!   that cannot be reached are skipped with a one-line reason.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod bench;
mod ceiling;
mod plugins;
mod runner;
mod seed;
mod soak;

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Shopeezy's project commands")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start the whole system on its embedded defaults (no servers needed).
    Run {
        /// Build with optimisations.
        #[arg(long)]
        release: bool,
    },
    /// Build the plugin components (plugins/, for wasm32-wasip2).
    Plugins,
    /// Work with one plugin component locally.
    Plugin {
        #[command(subcommand)]
        command: PluginCmd,
    },
    /// Measure the system: checkout, carts, auth, plugins (see README, Benchmarks).
    Bench {
        /// A short run (under 5 minutes); the default.
        #[arg(long, conflicts_with = "full")]
        quick: bool,
        /// The full run.
        #[arg(long)]
        full: bool,
        /// Only this backend: `postgres` or `sqlite`.
        #[arg(long)]
        backend: Option<String>,
        /// Instead of the benchmarks, a steady checkout load for this many
        /// minutes, reporting each service's memory per 100,000 orders.
        #[arg(long, value_name = "MINUTES", conflicts_with_all = ["quick", "full"])]
        soak: Option<u64>,
    },
    /// Run every test (CI=true: PostgreSQL, Redis and RabbitMQ are required).
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(Subcommand)]
enum PluginCmd {
    /// Run a component on a sample cart as the server would (same runtime,
    /// same limits) and print its output, fuel, time, memory and logs.
    Run {
        /// The component (.wasm).
        component: PathBuf,
        /// `pricing`, `promotion` or `validation`.
        #[arg(long)]
        hook: String,
        /// The sample cart (JSON, as for `POST /v1/plugins/{id}/dry-run`'s `cart`).
        #[arg(long)]
        input: PathBuf,
        /// The merchant config (JSON text); default `{}` or the input's own.
        #[arg(long)]
        config: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run { release } => run(release),
        Cmd::Test { args } => test(&args),
        Cmd::Bench {
            quick: _,
            full: _,
            backend,
            soak: Some(minutes),
        } => soak::run(minutes, backend.as_deref()),
        Cmd::Bench {
            quick: _,
            full,
            backend,
            soak: None,
        } => bench::run(full, backend.as_deref()),
        Cmd::Plugins => {
            plugins::build(true).map(|dir| println!("plugins built into {}", dir.display()))
        }
        Cmd::Plugin {
            command:
                PluginCmd::Run {
                    component,
                    hook,
                    input,
                    config,
                },
        } => runner::run(&component, &hook, &input, config.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// Where cargo puts what it builds: `CARGO_TARGET_DIR` when set, else
/// `target/` of the workspace.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn status(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

// ---------------------------------------------------------------- test

fn test(args: &[String]) -> Result<()> {
    if ci() {
        require_servers()?;
    }
    let started = Instant::now();
    // Tests run real components: build them first (their own workspace).
    let plugins = plugins::build(true)?;
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--all-targets"])
        .args(args)
        .env("SHOPEEZY_TEST_PLUGINS_DIR", &plugins);
    let totals = run_counting(&mut cmd)?;
    // The closing line stands alone, in the form CI reads.
    println!("\nthe tests took {:.0} s", started.elapsed().as_secs_f64());
    println!(
        "tests: {} passed, {} failed, {} skipped",
        totals.passed.saturating_sub(totals.skipped),
        totals.failed,
        totals.skipped
    );
    if !totals.ok {
        bail!("some tests failed");
    }
    Ok(())
}

#[derive(Default)]
struct Totals {
    passed: u64,
    failed: u64,
    skipped: u64,
    ok: bool,
}

/// Runs `cargo test`, passing its output through, and adds up libtest's
/// `test result:` lines and the tests' `SKIPPED` lines (which they write
/// straight to stderr, past libtest's capture).
fn run_counting(cmd: &mut Command) -> Result<Totals> {
    use std::io::BufRead;
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting cargo test")?;
    let stderr = child.stderr.take().context("no stderr")?;
    let skipped = std::thread::spawn(move || {
        let mut skipped = 0;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("SKIPPED ") {
                skipped += 1;
            }
            eprintln!("{line}");
        }
        skipped
    });
    let mut totals = Totals::default();
    let stdout = child.stdout.take().context("no stdout")?;
    for line in std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
    {
        if let Some(rest) = line.strip_prefix("test result: ") {
            totals.passed += count(rest, " passed");
            totals.failed += count(rest, " failed");
        }
        println!("{line}");
    }
    totals.skipped = skipped.join().unwrap_or(0);
    totals.ok = child.wait()?.success() && totals.failed == 0;
    Ok(totals)
}

/// The number before `label` in a libtest summary such as `ok. 3 passed; 0 failed;`.
fn count(summary: &str, label: &str) -> u64 {
    summary
        .split(';')
        .find(|part| part.ends_with(label))
        .and_then(|part| part.trim_end_matches(label).rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Under CI every real server must answer; say which one does not, at once.
fn require_servers() -> Result<()> {
    let servers = [
        ("PostgreSQL", "127.0.0.1:5432"),
        ("Redis", "127.0.0.1:6379"),
        ("RabbitMQ", "127.0.0.1:5672"),
    ];
    let missing: Vec<String> = servers
        .iter()
        .filter(|(_, addr)| !reachable(addr))
        .map(|(name, addr)| format!("{name} ({addr})"))
        .collect();
    if !missing.is_empty() {
        bail!(
            "CI=true needs these servers, which are not reachable: {}",
            missing.join(", ")
        );
    }
    Ok(())
}

fn reachable(addr: &str) -> bool {
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(2)).is_ok())
}

// ---------------------------------------------------------------- run

/// The embedded-default settings of the demo, overridable from the shell.
const DEMO_ENV: &[(&str, &str)] = &[
    ("SHOPEEZY_ACCOUNT_DATABASE_URL", "sqlite://data/account.db"),
    ("SHOPEEZY_ACCOUNT_HTTP_ADDR", "127.0.0.1:8081"),
    ("SHOPEEZY_ACCOUNT_GRPC_ADDR", "127.0.0.1:50051"),
    ("SHOPEEZY_HOST_DATABASE_URL", "sqlite://data/host.db"),
    ("SHOPEEZY_HOST_HTTP_ADDR", "127.0.0.1:8080"),
    ("SHOPEEZY_AUTH_GRPC_URL", "http://127.0.0.1:50051"),
    ("SHOPEEZY_ADMIN_EMAIL", "admin@shopeezy.local"),
    ("SHOPEEZY_ADMIN_PASSWORD", "shopeezy-admin"),
    ("SHOPEEZY_DATA_DIR", "data"),
];

fn env_or_default(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        DEMO_ENV
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| *v)
            .to_owned()
    })
}

fn run(release: bool) -> Result<()> {
    let profile = if release { "release" } else { "debug" };
    let mut build = cargo();
    build.args([
        "build",
        "--bin",
        "shopeezy-account",
        "--bin",
        "shopeezy-host",
    ]);
    if release {
        build.arg("--release");
    }
    status(&mut build)?;
    let plugins_dir = plugins::build(true)?;

    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // Ctrl-C reaches the children too (same process group); we only wait.
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;

    let bin = target_dir().join(profile);
    let mut children = Services::default();
    children.start("account", &bin.join("shopeezy-account"))?;
    let account = env_or_default("SHOPEEZY_ACCOUNT_HTTP_ADDR");
    wait_ready(&account, &stop, &mut children)?;
    children.start("host", &bin.join("shopeezy-host"))?;
    let host = env_or_default("SHOPEEZY_HOST_HTTP_ADDR");
    wait_ready(&host, &stop, &mut children)?;
    let products = seed::demo_store(&account, &host).context("seeding the demo store")?;
    let installed = seed::demo_plugins(&account, &host, &plugins_dir)
        .context("installing the example plugins")?;
    print_banner(products, installed);

    while !stop.load(Ordering::SeqCst) {
        if let Some(name) = children.exited()? {
            children.stop();
            bail!("the {name} service stopped unexpectedly; see its log above");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("\nstopping…");
    children.stop();
    Ok(())
}

#[derive(Default)]
struct Services {
    running: Vec<(&'static str, Child)>,
}

impl Services {
    /// Starts a service with the demo's settings.
    fn start(&mut self, name: &'static str, bin: &Path) -> Result<()> {
        let env: Vec<(String, String)> = DEMO_ENV
            .iter()
            .map(|(k, _)| ((*k).to_owned(), env_or_default(k)))
            .collect();
        self.start_with(name, bin, &env)
    }

    /// Starts a service with the given settings.
    fn start_with(
        &mut self,
        name: &'static str,
        bin: &Path,
        env: &[(String, String)],
    ) -> Result<()> {
        let mut cmd = Command::new(bin);
        cmd.current_dir(root());
        for (key, value) in env {
            cmd.env(key, value);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        self.running.push((name, child));
        Ok(())
    }

    /// The process id of each running service.
    fn pids(&self) -> Vec<(&'static str, u32)> {
        self.running
            .iter()
            .map(|(name, child)| (*name, child.id()))
            .collect()
    }

    fn exited(&mut self) -> Result<Option<&'static str>> {
        for (name, child) in &mut self.running {
            if child.try_wait()?.is_some() {
                return Ok(Some(name));
            }
        }
        Ok(None)
    }

    /// Asks every service to stop (SIGTERM: finish requests in flight) and
    /// waits for it; kills one that takes longer than 30 s.
    fn stop(&mut self) {
        for (_, child) in &self.running {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        for (name, child) in &mut self.running {
            while Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if !matches!(child.try_wait(), Ok(Some(_))) {
                eprintln!("{name} did not stop in time; killing it");
                let _ = child.kill();
            }
            let _ = child.wait();
        }
        self.running.clear();
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.stop();
    }
}

fn wait_ready(addr: &str, stop: &AtomicBool, children: &mut Services) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        if http_get(addr, "/readyz").is_ok_and(|(code, _)| code == 200) {
            return Ok(());
        }
        if let Some(name) = children.exited()? {
            bail!("the {name} service exited during start-up; see its log above");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("the services at {addr} did not become ready");
}

/// A minimal HTTP/1.1 GET, enough to poll readiness without a client crate.
fn http_get(addr: &str, path: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no status line")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

fn print_banner(products: usize, plugins: usize) {
    let host = env_or_default("SHOPEEZY_HOST_HTTP_ADDR");
    let account = env_or_default("SHOPEEZY_ACCOUNT_HTTP_ADDR");
    let grpc = env_or_default("SHOPEEZY_ACCOUNT_GRPC_ADDR");
    let email = env_or_default("SHOPEEZY_ADMIN_EMAIL");
    let password = env_or_default("SHOPEEZY_ADMIN_PASSWORD");
    println!(
        "\n\
Shopeezy is running on its embedded defaults (SQLite in ./data, in-process revocation).\n\
\n  host REST      http://{host}   (API reference: http://{host}/docs)\
\n  account REST   http://{account}   (API reference: http://{account}/docs)\
\n  account gRPC   {grpc}   (shopeezy.auth.v1.AuthService, reflection on)\
\n  demo admin     {email} / {password}\
\n  demo store     {products} products from two sellers (acme@shopeezy.local, globex@shopeezy.local; password shopeezy-seller)\
\n  plugins        {plugins} example plugins installed (try the code SAVE10 on a cart over $50)\n\
\nTry it:\n\
\x20 curl -s 'http://{host}/v1/products?q=mug'\n\
\x20 curl -s http://{account}/v1/auth/login -H 'content-type: application/json' \\\n\
\x20      -d '{{\"email\":\"{email}\",\"password\":\"{password}\"}}'\n\
\nThe README's walkthrough goes from there to an order.\n\
\nCtrl-C stops everything.\n"
    );
}
