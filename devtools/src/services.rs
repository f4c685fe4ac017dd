//! The processes of a local run: the account service and the host started
//! from the binaries beside this one, waited for until ready, stopped with
//! SIGTERM. `run` is the demo of `cargo xtask run`; the benchmarks start
//! their own copies with [`Services::start_with`].

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use shopeezy_common::db::pgbouncer_setup;

use crate::{root, seed};

/// The embedded-default settings of the demo, overridable from the shell.
const DEMO_ENV: &[(&str, &str)] = &[
    ("SHOPEEZY_ACCOUNT_DATABASE_URL", "sqlite://data/account.db"),
    ("SHOPEEZY_ACCOUNT_HTTP_ADDR", "127.0.0.1:8081"),
    ("SHOPEEZY_ACCOUNT_GRPC_ADDR", "127.0.0.1:50051"),
    ("SHOPEEZY_HOST_DATABASE_URL", "sqlite://data/host.db"),
    ("SHOPEEZY_HOST_HTTP_ADDR", "127.0.0.1:8080"),
    ("SHOPEEZY_HOST_ACCOUNT_URL", "http://127.0.0.1:8081"),
    ("SHOPEEZY_AUTH_GRPC_URL", "http://127.0.0.1:50051"),
    ("SHOPEEZY_ADMIN_EMAIL", "admin@shopeezy.local"),
    ("SHOPEEZY_ADMIN_PASSWORD", "shopeezy-admin"),
    ("SHOPEEZY_DATA_DIR", "data"),
];

/// A demo setting: the shell's value, else the demo's default.
pub fn env_or_default(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        DEMO_ENV
            .iter()
            .find(|(n, _)| *n == name)
            .map_or("", |(_, v)| *v)
            .to_owned()
    })
}

/// Where the services' binaries are: beside this one (cargo builds them all
/// into the same profile folder).
pub fn bin_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this binary")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("this binary has no folder")
}

/// Starts the account service and the host on the demo's settings, seeds
/// the demo store and the example plugins (from `plugins`), prints where
/// everything is, and waits for Ctrl-C.
pub fn run(plugins: &Path) -> Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    // Ctrl-C reaches the children too (same process group); we only wait.
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;

    let bin = bin_dir()?;
    let mut children = Services::default();
    children.start("account", &bin.join("shopeezy-account"))?;
    let account = env_or_default("SHOPEEZY_ACCOUNT_HTTP_ADDR");
    wait_ready(&account, &stop, &mut children)?;
    children.start("host", &bin.join("shopeezy-host"))?;
    let host = env_or_default("SHOPEEZY_HOST_HTTP_ADDR");
    wait_ready(&host, &stop, &mut children)?;
    let products = seed::demo_store(&account, &host).context("seeding the demo store")?;
    let installed =
        seed::demo_plugins(&account, &host, plugins).context("installing the example plugins")?;
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

/// Running services, stopped when dropped.
#[derive(Default)]
pub struct Services {
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
    pub fn start_with(
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

    /// Starts PgBouncer in transaction pooling mode in front of the
    /// PostgreSQL at 127.0.0.1:5432, its configuration in `dir`, on a free
    /// loopback port; the port, once it accepts connections.
    pub fn start_pgbouncer(&mut self, dir: &Path) -> Result<u16> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let config = pgbouncer_setup::write_config(dir, "127.0.0.1:5432", "postgres", port, 20)?;
        let mut cmd = pgbouncer_setup::command(&config);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let child = cmd
            .spawn()
            .context("starting pgbouncer (Debian: apt install pgbouncer)")?;
        self.running.push(("pgbouncer", child));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(name) = self.exited()? {
                bail!("{name} exited during start-up");
            }
            if Instant::now() > deadline {
                bail!("pgbouncer did not listen on port {port} within 10 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(port)
    }

    /// The process id of each running service.
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
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
    pub fn stop(&mut self) {
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

/// Waits until the service at `addr` answers `/readyz` with 200 (at most a
/// minute), failing early when one of `children` exits.
pub fn wait_ready(addr: &str, stop: &AtomicBool, children: &mut Services) -> Result<()> {
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
\n  console        http://{host}/console/   (sellers and admins: products, plugins, dry runs, orders)\
\n  storefront     http://{host}/shop/\
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

/// Whether `pgbouncer` is on this machine.
pub fn pgbouncer_available() -> bool {
    Command::new("pgbouncer")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether a MySQL/MariaDB server accepts connections at 127.0.0.1:3306.
pub fn mysql_available() -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], 3306).into(), Duration::from_secs(1)).is_ok()
}
