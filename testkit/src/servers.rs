//! The real servers the tests use: PostgreSQL, MySQL/MariaDB, Redis and RabbitMQ of the
//! machine. Without `CI`, a test whose server cannot be reached is skipped
//! with a one-line reason; with `CI=true` it fails instead, so CI never
//! passes by skipping.

use std::io::Write as _;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use shopeezy_common::db::pgbouncer_setup;
use sqlx::mysql::MySqlConnectOptions;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// Whether the tests run under CI, where every server is required.
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

/// Skips the calling test (returns `None`) or, under CI, fails it: `what`
/// (a server) could not be reached, because of `why`.
pub fn unreachable_server<T>(what: &str, why: impl std::fmt::Display) -> Option<T> {
    skip(
        &format!("{what} not reachable ({why})"),
        &format!("{what} is required under CI=true but could not be reached: {why}"),
    )
}

/// Skips the calling test (returns `None`) with a `SKIPPED` line giving
/// `reason`, or, under CI, fails it with `under_ci`.
pub fn skip<T>(reason: &str, under_ci: &str) -> Option<T> {
    if ci() {
        panic!("{under_ci}");
    }
    let test = std::thread::current().name().unwrap_or("test").to_owned();
    // Written past libtest's output capture, so the reason is always seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {reason}; set CI=true to make this a failure"
    );
    None
}

/// The PostgreSQL server the tests use.
pub fn postgres_base_url() -> String {
    std::env::var("SHOPEEZY_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// The Redis server the tests use.
pub fn redis_url() -> String {
    std::env::var("SHOPEEZY_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The MySQL/MariaDB server the tests use.
pub fn mysql_base_url() -> String {
    std::env::var("SHOPEEZY_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// A database made for one test, dropped when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL to give the service.
    pub url: String,
    name: String,
    admin: Admin,
}

/// How a test database is reached to drop it.
#[derive(Debug, Clone)]
enum Admin {
    Postgres(PgConnectOptions),
    MySql(MySqlConnectOptions),
}

/// `base` with its database replaced by `name`.
fn with_database(base: &str, name: &str) -> String {
    let path_from = base.find("://").map_or(0, |s| s + 3);
    let base = base.split('?').next().unwrap_or(base);
    match base[path_from..].find('/') {
        Some(slash) => format!("{}/{name}", &base[..path_from + slash]),
        None => format!("{base}/{name}"),
    }
}

/// A name for a new test database, and the URL of that name on the
/// MySQL/MariaDB test server, which the service creates itself at start
/// (and the test drops); `None` when the server cannot be reached (skipped,
/// or failing under CI).
pub async fn fresh_mysql() -> Option<TestDatabase> {
    let base = mysql_base_url();
    let admin = match MySqlConnectOptions::from_str(&base) {
        Ok(o) => o.disable_statement_logging(),
        Err(e) => panic!("SHOPEEZY_TEST_MYSQL_URL is not a MySQL URL: {e}"),
    };
    match tokio::time::timeout(Duration::from_secs(5), admin.connect()).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
        }
        Ok(Err(e)) => return unreachable_server("MySQL/MariaDB", e),
        Err(_) => return unreachable_server("MySQL/MariaDB", "timed out"),
    }
    let name = format!("shopeezy_test_{}", uuid::Uuid::new_v4().simple());
    Some(TestDatabase {
        url: with_database(&base, &name),
        name,
        admin: Admin::MySql(admin),
    })
}

/// A fresh, empty PostgreSQL database for one test; `None` when skipped.
pub async fn fresh_postgres() -> Option<TestDatabase> {
    let base = postgres_base_url();
    let admin = match PgConnectOptions::from_str(&base) {
        Ok(o) => o.disable_statement_logging(),
        Err(e) => panic!("SHOPEEZY_TEST_POSTGRES_URL is not a PostgreSQL URL: {e}"),
    };
    let mut conn = match tokio::time::timeout(Duration::from_secs(5), admin.connect()).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return unreachable_server("PostgreSQL", e),
        Err(_) => return unreachable_server("PostgreSQL", "timed out"),
    };
    let name = format!("shopeezy_test_{}", uuid::Uuid::new_v4().simple());
    if let Err(e) = sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
    {
        panic!("could not create test database {name}: {e}");
    }
    let _ = conn.close().await;
    Some(TestDatabase {
        url: with_database(&base, &name),
        name,
        admin: Admin::Postgres(admin),
    })
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        run_to_end(async move {
            match admin {
                Admin::Postgres(admin) => {
                    if let Ok(mut conn) = admin.connect().await {
                        let drop = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = sqlx::query(&drop).execute(&mut conn).await;
                        let _ = conn.close().await;
                    }
                }
                Admin::MySql(admin) => {
                    if let Ok(mut conn) = admin.connect().await {
                        // The service's connections may still be open: the
                        // drop waits for their metadata locks only as long
                        // as they stay in a transaction.
                        let drop = format!("DROP DATABASE IF EXISTS {name}");
                        let _ = sqlx::query(&drop).execute(&mut conn).await;
                        let _ = conn.close().await;
                    }
                }
            }
        });
    }
}

/// Runs `cleanup` to its end on a thread and a runtime of its own: a `Drop`
/// may run inside the test's runtime, which it must not block.
pub fn run_to_end<F: Future<Output = ()> + Send + 'static>(cleanup: F) {
    let _ = std::thread::spawn(move || {
        let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        rt.block_on(cleanup);
    })
    .join();
}

tokio::task_local! {
    /// Set while a test runs [`through_pgbouncer`].
    static THROUGH_PGBOUNCER: ();
}

/// Runs `test` (a scenario on [`Backend::Production`](crate::Backend)) with
/// every PostgreSQL database its [`Storage`](crate::Storage) hands out
/// reached through a PgBouncer of its own, in transaction pooling mode.
/// `every_backend!(pgbouncer: …)` makes such a test.
pub async fn through_pgbouncer<F: Future>(test: F) -> F::Output {
    THROUGH_PGBOUNCER.scope((), test).await
}

/// Whether the current test runs [`through_pgbouncer`].
pub fn pgbouncer_requested() -> bool {
    THROUGH_PGBOUNCER.try_with(|()| ()).is_ok()
}

/// A `pgbouncer` process of one test, in front of the test PostgreSQL
/// server: transaction pooling, every database (`* = host port`), trust
/// authentication on a free loopback port, its configuration and log in a
/// temporary folder. Stopped when dropped.
#[derive(Debug)]
pub struct PgBouncer {
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    child: std::process::Child,
    dir: tempfile::TempDir,
}

/// Server connections PgBouncer opens per database and user.
const PGBOUNCER_POOL_SIZE: usize = 20;

impl PgBouncer {
    /// Starts one; `None` when `pgbouncer` is not installed (skipped, or
    /// failing under CI). Run as root, it switches to the `postgres` user
    /// (`-u postgres`; it refuses to run as root) once it has read its files.
    pub async fn start() -> Option<Self> {
        if let Err(e) = std::process::Command::new("pgbouncer")
            .arg("--version")
            .output()
        {
            return skip(
                &format!("pgbouncer is not installed ({e}; Debian: apt install pgbouncer)"),
                &format!("pgbouncer is required under CI=true but could not be run: {e}"),
            );
        }
        let base = PgConnectOptions::from_str(&postgres_base_url())
            .expect("SHOPEEZY_TEST_POSTGRES_URL is a PostgreSQL URL");
        let dir = tempfile::Builder::new()
            .prefix("shopeezy-pgbouncer-")
            .tempdir()
            .expect("a temporary folder");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let server = format!("{}:{}", base.get_host(), base.get_port());
        let config = pgbouncer_setup::write_config(
            dir.path(),
            &server,
            base.get_username(),
            port,
            PGBOUNCER_POOL_SIZE,
        )
        .expect("PgBouncer's configuration is written");
        // Its log goes to a file this process opens (PgBouncer may no
        // longer be allowed to once it has switched users).
        let log = std::fs::File::create(dir.path().join("pgbouncer.log")).expect("a log file");
        let mut cmd = pgbouncer_setup::command(&config);
        let mut child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("the log file"))
            .stderr(log)
            .spawn()
            .expect("pgbouncer starts");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            let exited = child.try_wait().ok().flatten();
            if exited.is_some() || std::time::Instant::now() > deadline {
                let _ = child.kill();
                let log =
                    std::fs::read_to_string(dir.path().join("pgbouncer.log")).unwrap_or_default();
                panic!("pgbouncer did not start listening on 127.0.0.1:{port} ({exited:?}): {log}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Some(Self { port, child, dir })
    }

    /// `database_url` (of the test server) reached through this PgBouncer,
    /// with `pgbouncer=true` for the services.
    pub fn url_for(&self, database_url: &str) -> String {
        let url = url_via(database_url, &format!("127.0.0.1:{}", self.port));
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}pgbouncer=true")
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pgbouncer.log")).unwrap_or_default()
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Redis URL when Redis answers a PING; `None` when skipped.
pub async fn reachable_redis() -> Option<String> {
    let url = redis_url();
    let ping = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(Duration::from_secs(5), ping).await {
        Ok(Ok(_)) => Some(url),
        Ok(Err(e)) => unreachable_server("Redis", e),
        Err(_) => unreachable_server("Redis", "timed out"),
    }
}

/// The RabbitMQ server the tests use.
pub fn amqp_url() -> String {
    std::env::var("SHOPEEZY_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// The AMQP URL when RabbitMQ accepts a connection; `None` when skipped.
pub async fn reachable_amqp() -> Option<String> {
    let url = amqp_url();
    match shopeezy_common::events::amqp::connect(&url, "shopeezy test probe").await {
        Ok(connection) => {
            shopeezy_common::events::amqp::close(&connection).await;
            Some(url)
        }
        Err(e) => unreachable_server("RabbitMQ", format!("{e:#}")),
    }
}

/// A key prefix no other test uses, so tests can share one Redis.
pub fn unique_prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4().simple())
}

/// A TCP proxy on loopback that a test can cut and restore, to make a real
/// server unreachable for the service under test without stopping it.
#[derive(Debug, Clone)]
pub struct TcpProxy {
    /// Where the service should connect.
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    cut: Arc<Notify>,
}

impl TcpProxy {
    /// Starts a proxy to `target` (`host:port`).
    pub async fn start(target: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let proxy = Self {
            addr,
            up: Arc::new(AtomicBool::new(true)),
            cut: Arc::new(Notify::new()),
        };
        let target = target.to_owned();
        let this = proxy.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !this.up.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let target = target.clone();
                let cut = this.cut.clone();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cut.notified() => {}
                    }
                });
            }
        });
        Ok(proxy)
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    /// The proxy's address as `host:port`.
    pub fn host_port(&self) -> String {
        self.addr.to_string()
    }
}

pub use shopeezy_common::db::pgbouncer_setup::url_host_port;

/// `url` with its `host:port` replaced by `host_port`, e.g. to reach a
/// server through a [`TcpProxy`].
pub fn url_via(url: &str, host_port: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let userinfo = authority
        .rsplit_once('@')
        .map(|(userinfo, _)| format!("{userinfo}@"))
        .unwrap_or_default();
    format!("{scheme}://{userinfo}{host_port}{path}")
}
