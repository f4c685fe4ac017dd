//! `cargo xtask <command>`: the project's own commands.
//!
//! - `run`: builds and starts the whole system on its embedded defaults
//!   (SQLite under `./data/`, in-process revocation and events) and prints
//!   where to reach it. Ctrl-C stops everything cleanly.
//! - `test`: runs every test. With `CI=true`, PostgreSQL, Redis and RabbitMQ
//!   are required and checked first; without it, tests that need a server
//!   that cannot be reached are skipped with a one-line reason.
//! - `image`: builds the container images (`deploy/Containerfile`, one
//!   target per service) with podman from the static binaries.
//! - `bench`, `plugins`, `plugin run`: see `--help`.
//!
//! `run`, `test` and `image` build for [`MUSL`] (static binaries, which the
//! images hold as they are): one compile serves all three. `bench` builds
//! for the native target, as its figures always were.
//!
//! xtask depends on no crate of the workspace, so building it is quick and
//! compiles nothing the services need. It builds them all with one command
//! ([`build`]: every binary of the workspace, the same units `cargo test`
//! then reuses) and hands over to `shopeezy-devtools` (the demo and the
//! benchmarks) or `shopeezy-host plugin run` (the local runner).

use std::net::{TcpStream, ToSocketAddrs};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

mod plugins;

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
        /// Only these backends, comma-separated: `postgres`, `pgbouncer`
        /// (PostgreSQL through PgBouncer, transaction pooling), `mysql`
        /// (MariaDB/MySQL at 127.0.0.1:3306), `sqlite`; default all of them
        /// (`pgbouncer` when installed, `mysql` when its server answers).
        #[arg(long)]
        backend: Option<String>,
        /// Write `bench/results/<NAME>.{md,json}` instead of `quick`/`full`.
        #[arg(long, value_name = "NAME", conflicts_with = "soak")]
        out: Option<String>,
        /// Instead of the benchmarks, a steady checkout load for this many
        /// minutes, reporting each service's memory per 100,000 orders.
        #[arg(long, value_name = "MINUTES", conflicts_with_all = ["quick", "full"])]
        soak: Option<u64>,
    },
    /// Build the container images localhost/shopeezy-{account,host,notifier}
    /// with podman (deploy/Containerfile; see README, Containers).
    Image {
        /// Build the binaries with optimisations (the images to ship);
        /// without it the images hold the dev build `run` and `test` use.
        #[arg(long)]
        release: bool,
        /// The images' tag.
        #[arg(long, default_value = "latest")]
        tag: String,
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
        Cmd::Image { release, tag } => image(release, &tag),
        Cmd::Bench {
            quick: _,
            full,
            backend,
            out,
            soak,
        } => bench(full, backend.as_deref(), out.as_deref(), soak),
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
        } => plugin_run(&component, &hook, &input, config.as_deref()),
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

/// `cargo`, in the repository, with the environment a shell's `cargo` has:
/// without what `cargo run` set for xtask itself (`CARGO_MANIFEST_DIR`,
/// `CARGO_PKG_NAME`, …). Build scripts that watch those (ring's does) would
/// otherwise see them change between `cargo xtask run` and a plain `cargo
/// test`, and their crates and everything above them would compile again.
fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key.starts_with("CARGO_PKG_")
            || matches!(
                key,
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
            )
        {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn status(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// The target `run`, `test` and `image` build the services for: static
/// binaries (musl libc linked in), so that a container image needs nothing
/// but the binary.
const MUSL: &str = "x86_64-unknown-linux-musl";

/// What [`build`] compiles for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    /// [`MUSL`]: `run`, `test`, `image`.
    Musl,
    /// The machine's own (glibc): `bench`, whose figures stay comparable.
    Native,
}

/// Adds the rustup target `target` to the toolchain `dir` resolves to,
/// unless it is there already. Without rustup (a toolchain installed some
/// other way) nothing is added and cargo reports a missing target itself.
fn ensure_rust_target(dir: &Path, target: &str) -> Result<()> {
    let Ok(listed) = Command::new("rustup")
        .current_dir(dir)
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(());
    };
    let installed = String::from_utf8_lossy(&listed.stdout);
    if listed.status.success() && installed.lines().any(|line| line.trim() == target) {
        return Ok(());
    }
    let status = Command::new("rustup")
        .current_dir(dir)
        .args(["target", "add", target])
        .status()
        .context("running rustup target add")?;
    if !status.success() {
        bail!("`rustup target add {target}` failed ({status})");
    }
    Ok(())
}

/// What building for [`MUSL`] needs: the rustup target, and `musl-gcc` for
/// the crates that compile C (ring, SQLite, wasmtime's helpers). As root,
/// a missing `musl-gcc` is installed with apt-get (Debian's `musl-tools`);
/// otherwise the error says what to install.
fn ensure_musl() -> Result<()> {
    ensure_rust_target(&root(), MUSL)?;
    let works = || {
        Command::new("musl-gcc")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if works() {
        return Ok(());
    }
    if !apt_install("musl-tools")? {
        bail!(
            "building for {MUSL} needs musl-gcc, which is not installed \
             (Debian/Ubuntu: `sudo apt-get install musl-tools`)"
        );
    }
    if !works() {
        bail!("musl-tools is installed but musl-gcc does not run");
    }
    Ok(())
}

/// Installs the Debian `package` with apt-get when this runs as root on a
/// machine that has apt; `false` when it cannot try (the caller says what
/// to install by hand).
fn apt_install(package: &str) -> Result<bool> {
    let root_user = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
    };
    if !(root_user && Path::new("/usr/bin/apt-get").exists()) {
        return Ok(false);
    }
    eprintln!("xtask: installing {package} with apt-get");
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends", package])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    if !install() {
        // A fresh machine may have no package lists yet.
        status(Command::new("apt-get").args(["update", "-qq"]))?;
        if !install() {
            bail!("apt-get install {package} failed");
        }
    }
    Ok(true)
}

/// What the browser tests (`testkit/tests/console.rs`) drive: Debian's
/// Chromium and `playwright-core` from npm (`testkit/e2e`, pinned by its
/// lock file). Installed when missing; without CI a machine that cannot
/// install them only skips those tests, under CI it fails here at once.
fn ensure_browser_tests() -> Result<()> {
    if !Path::new("/usr/bin/chromium").exists() {
        // Outside CI a failed install (no network, say) only skips the
        // browser tests; it must not stop every other test.
        let installed = apt_install("chromium").unwrap_or_else(|e| {
            eprintln!("xtask: {e:#}");
            false
        });
        if !installed && ci() {
            bail!(
                "CI=true needs Chromium for the console tests (Debian: apt-get install chromium)"
            );
        }
    }
    let e2e = root().join("testkit/e2e");
    if e2e.join("node_modules/playwright-core").exists() {
        return Ok(());
    }
    eprintln!("xtask: installing playwright-core (npm ci in testkit/e2e)");
    let installed = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&e2e)
        .status()
        .is_ok_and(|s| s.success());
    if !installed && ci() {
        bail!("npm ci in testkit/e2e failed; CI=true needs it for the console tests");
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
    ensure_musl()?;
    ensure_browser_tests()?;
    let started = Instant::now();
    // Tests run real components: build them first (their own workspace).
    let plugins = plugins::build(true)?;
    let plugins_took = started.elapsed();
    // Compiling and running are timed apart: the build first (cargo's
    // options, before any `--`), then the same command runs the tests.
    let build_args = args.split(|a| a == "--").next().unwrap_or_default();
    status(
        cargo()
            .args(["test", "--workspace", "--all-targets", "--no-run"])
            .args(["--target", MUSL])
            .args(build_args),
    )?;
    let built = started.elapsed();
    let mut cmd = cargo();
    cmd.args(["test", "--workspace", "--all-targets"])
        .args(["--target", MUSL])
        .args(args)
        .env("SHOPEEZY_TEST_PLUGINS_DIR", &plugins);
    let totals = run_counting(&mut cmd)?;
    // The closing line stands alone, in the form CI reads.
    println!(
        "\nplugins built in {:.0} s, tests built in {:.0} s, run in {:.0} s",
        plugins_took.as_secs_f64(),
        (built - plugins_took).as_secs_f64(),
        (started.elapsed() - built).as_secs_f64()
    );
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
        ("MariaDB", "127.0.0.1:3306"),
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

// ---------------------------------------------------------------- build

/// Builds every binary of the workspace but xtask (the three services and
/// `shopeezy-devtools`) in the dev profile (see Cargo.toml), or
/// with `--release`, for `target`, and returns the folder holding them. One
/// cargo command for all of them, with the same packages selected as `cargo
/// test --workspace`, so that dependencies resolve to the same features and
/// `cargo xtask test` (also for [`MUSL`]) afterwards compiles only the tests
/// themselves.
fn build(release: bool, target: Target) -> Result<PathBuf> {
    if target == Target::Musl {
        ensure_musl()?;
    }
    let target_arg = match target {
        Target::Musl => format!(" --target {MUSL}"),
        Target::Native => String::new(),
    };
    eprintln!(
        "xtask: building the services (cargo build --workspace --bins{}{target_arg}); a first build takes a few minutes",
        if release { " --release" } else { "" }
    );
    let mut cmd = cargo();
    cmd.args(["build", "--workspace", "--exclude", "xtask", "--bins"]);
    if release {
        cmd.arg("--release");
    }
    let mut dir = target_dir();
    if target == Target::Musl {
        cmd.args(["--target", MUSL]);
        dir.push(MUSL);
    }
    status(&mut cmd)?;
    Ok(dir.join(if release { "release" } else { "debug" }))
}

/// Replaces this process with `cmd` (so Ctrl-C and the exit status are
/// the command's own).
fn hand_over(cmd: &mut Command) -> Result<()> {
    let err = cmd.exec();
    Err(anyhow::Error::new(err).context(format!("starting {cmd:?}")))
}

// ---------------------------------------------------------------- run

fn run(release: bool) -> Result<()> {
    let started = Instant::now();
    let bin = build(release, Target::Musl)?;
    let plugins = plugins::build(true)?;
    eprintln!(
        "xtask: built in {:.0} s; starting the services",
        started.elapsed().as_secs_f64()
    );
    hand_over(
        Command::new(bin.join("shopeezy-devtools"))
            .current_dir(root())
            .arg("run")
            .arg("--plugins")
            .arg(plugins),
    )
}

// ---------------------------------------------------------------- image

/// Builds the binaries for [`MUSL`] (dev profile, the same build `run` and
/// `test` make, or `--release`) and the three images from them with
/// `deploy/build-images.sh` (stripped copies, `podman build --format
/// docker`, one target of `deploy/Containerfile` per service).
fn image(release: bool, tag: &str) -> Result<()> {
    let started = Instant::now();
    let bin = build(release, Target::Musl)?;
    let built = started.elapsed();
    status(
        Command::new("bash")
            .current_dir(root())
            .arg("deploy/build-images.sh")
            .arg(&bin)
            .arg(tag),
    )?;
    eprintln!(
        "xtask: binaries built in {:.0} s, images in {:.0} s",
        built.as_secs_f64(),
        (started.elapsed() - built).as_secs_f64()
    );
    Ok(())
}

// ---------------------------------------------------------------- plugin run

fn plugin_run(component: &Path, hook: &str, input: &Path, config: Option<&str>) -> Result<()> {
    let bin = build(false, Target::Musl)?;
    let mut cmd = Command::new(bin.join("shopeezy-host"));
    cmd.args(["plugin", "run"])
        .arg(component)
        .args(["--hook", hook, "--input"])
        .arg(input);
    if let Some(config) = config {
        cmd.args(["--config", config]);
    }
    hand_over(&mut cmd)
}

// ---------------------------------------------------------------- bench

/// Benchmarks measure the release build (a build of its own, apart from
/// the dev profile's of `run` and `test`), for the native target: the
/// figures in README were all taken on glibc builds.
fn bench(full: bool, backend: Option<&str>, out: Option<&str>, soak: Option<u64>) -> Result<()> {
    let bin = build(true, Target::Native)?;
    let devtools = bin.join("shopeezy-devtools");
    let mut cmd = Command::new(&devtools);
    cmd.current_dir(root());
    if let Some(minutes) = soak {
        cmd.args(["soak", "--minutes", &minutes.to_string()]);
        if let Some(b) = backend {
            cmd.args(["--backend", b]);
        }
        return hand_over(&mut cmd);
    }
    let plugins = plugins::build(true)?;
    cmd.arg("bench").arg("--plugins").arg(&plugins);
    if full {
        cmd.arg("--full");
    }
    if let Some(b) = backend {
        cmd.args(["--backend", b]);
    }
    if let Some(name) = out {
        cmd.args(["--out", name]);
    }
    status(&mut cmd)?;
    if full {
        // Criterion's report of the plugin micro-benchmarks, in the same
        // profile as the services.
        eprintln!("== plugins, criterion (report in target/criterion)");
        status(
            cargo()
                .args(["bench", "--profile", "release", "-p", "shopeezy-devtools"])
                .args(["--bench", "plugins"])
                .env("SHOPEEZY_TEST_PLUGINS_DIR", &plugins),
        )?;
    }
    Ok(())
}
