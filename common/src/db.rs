//! Databases: a service runs on SQLite (the embedded default), PostgreSQL or
//! MySQL/MariaDB, chosen by its URL. Queries that read the same on all three
//! are written once with [`with_db!`](crate::with_db) and
//! [`sql!`](crate::sql) (which gives MySQL its `?` placeholders at compile
//! time); the rest live in each store's backend module.
//!
//! MySQL is used in one shape: databases created `utf8mb4` with the
//! `utf8mb4_uca1400_nopad_as_cs` collation (case, accents and trailing
//! spaces count, as on the other two; see [`MYSQL_COLLATION`]), sessions in UTC, with
//! `ANSI_QUOTES`, `PIPES_AS_CONCAT` and `NO_BACKSLASH_ESCAPES` (`"name"`
//! is an identifier, `||` concatenates and `'\'` is a backslash, as on the
//! other two) and `READ COMMITTED` (PostgreSQL's
//! default: a plain read sees what committed before it; what must not
//! change under a transaction is read with `FOR UPDATE`).
//!
//! Faults are answered, not suffered:
//! - **PostgreSQL out of reach.** A watcher keeps one connection of its own
//!   and pings it; while the server cannot be reached, [`Db::pool`] hands out
//!   a pool that is already closed, so every query fails at once (503
//!   `database_unavailable` with `Retry-After`) instead of waiting the pool's
//!   acquire timeout. When the server answers again the real pool is back;
//!   its idle connections are tested before use, so dead ones are replaced.
//! - **A connection left in a bad state.** A connection that goes back to
//!   the pool still inside a transaction (a `COMMIT` or `ROLLBACK` that failed
//!   on a full or read-only disk) is closed, never reused. On SQLite, a
//!   connection opened while the data file could not be written (SQLite then
//!   opens it read-only, for good) is closed once the file is writable again.
//! - [`failure_problem`] answers each kind of failure: 503 when the database
//!   cannot be reached or cannot write, 507 when its disk is full.

pub mod dialect;
mod pgbouncer;
pub mod pgbouncer_setup;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use sqlx::migrate::Migrator;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::pool::PoolConnectionMetadata;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, Executor, MySqlPool, PgPool, SqlitePool};

/// A service's database: the pool of one of the three backends, and what is
/// known of its health.
#[derive(Debug, Clone)]
pub struct Db {
    pool: Pool,
    /// A closed pool of the same backend, handed out while the server is out
    /// of reach (PostgreSQL and MySQL).
    tripped: Option<Pool>,
    health: Arc<Health>,
}

/// A pool on one of the three backends.
#[derive(Debug, Clone)]
pub enum Pool {
    /// PostgreSQL, for production.
    Postgres(PgPool),
    /// SQLite, the embedded default.
    Sqlite(SqlitePool),
    /// MySQL or MariaDB (InnoDB), for production.
    MySql(MySqlPool),
}

/// Runs `$body` with `$pool` bound to the pool of whichever backend `$db` is.
/// The body is compiled once per backend, so each expansion is checked against
/// its own driver's types.
#[macro_export]
macro_rules! with_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $crate::db::Db::pool($db) {
            $crate::db::Pool::Postgres($pool) => $body,
            $crate::db::Pool::Sqlite($pool) => $body,
            $crate::db::Pool::MySql($pool) => $body,
        }
    };
}

/// One migration, embedded in the binary: its file name without `.sql`
/// (`NNNN_description`) and its SQL.
pub type Embedded = (&'static str, &'static str);

/// The migrations of one service, one set per backend, embedded by
/// [`embed_migrations!`](crate::embed_migrations). They are applied as
/// sqlx's own migrator applies a folder (same versions, descriptions and
/// checksums), without sqlx's compile-time macros.
#[derive(Debug, Clone, Copy)]
pub struct Migrations<'a> {
    /// For PostgreSQL.
    pub postgres: &'a [Embedded],
    /// For SQLite.
    pub sqlite: &'a [Embedded],
    /// For MySQL/MariaDB.
    pub mysql: &'a [Embedded],
}

/// `&[Embedded]` of the named files of `migrations/<dir>/` (relative to the
/// calling crate's folder's parent, the repository root):
/// `embed_migrations!("host/sqlite", ["0001_catalog", "0002_plugins"])`.
/// Every service tests with [`Migrations::unembedded`] that its lists name
/// every file.
#[macro_export]
macro_rules! embed_migrations {
    ($dir:literal, [$($name:literal),+ $(,)?]) => {
        &[$((
            $name,
            include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/", $dir, "/", $name, ".sql")),
        )),+]
    };
}

impl Migrations<'_> {
    /// What differs between these lists and the files of
    /// `migrations/<service>/{postgres,sqlite,mysql}/` under `root` (the
    /// repository): each `.sql` file not embedded and each name that is no
    /// file, as `backend/name`. Empty when they agree.
    pub fn unembedded(
        &self,
        root: &std::path::Path,
        service: &str,
    ) -> std::io::Result<Vec<String>> {
        let mut differ = Vec::new();
        for (backend, embedded) in [
            ("postgres", self.postgres),
            ("sqlite", self.sqlite),
            ("mysql", self.mysql),
        ] {
            let mut files = Vec::new();
            for entry in std::fs::read_dir(root.join("migrations").join(service).join(backend))? {
                let name = entry?.file_name().to_string_lossy().into_owned();
                if let Some(stem) = name.strip_suffix(".sql") {
                    files.push(stem.to_owned());
                }
            }
            differ.extend(
                files
                    .iter()
                    .filter(|f| !embedded.iter().any(|(name, _)| name == *f))
                    .map(|f| format!("{backend}/{f}.sql (not embedded)")),
            );
            differ.extend(
                embedded
                    .iter()
                    .filter(|(name, _)| !files.iter().any(|f| f == name))
                    .map(|(name, _)| format!("{backend}/{name} (no such file)")),
            );
        }
        Ok(differ)
    }
}

/// Embedded migrations as sqlx's migrator takes them.
#[derive(Debug)]
struct Source<'a>(&'a [Embedded]);

impl<'a> sqlx::migrate::MigrationSource<'a> for Source<'a> {
    fn resolve(
        self,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>,
                > + Send
                + 'a,
        >,
    > {
        Box::pin(async move {
            let mut migrations = Vec::with_capacity(self.0.len());
            for (name, sql) in self.0 {
                let (version, description) = name
                    .split_once('_')
                    .ok_or_else(|| format!("migration {name} is not named NNNN_description"))?;
                let version: i64 = version
                    .parse()
                    .map_err(|e| format!("migration {name}: its version: {e}"))?;
                migrations.push(sqlx::migrate::Migration::new(
                    version,
                    description.replace('_', " ").into(),
                    sqlx::migrate::MigrationType::Simple,
                    (*sql).into(),
                    sql.starts_with("-- no-transaction"),
                ));
            }
            migrations.sort_by_key(|m| m.version);
            Ok(migrations)
        })
    }
}

/// The migrator of `files`.
async fn migrator(files: &[Embedded]) -> anyhow::Result<Migrator> {
    Ok(Migrator::new(Source(files)).await?)
}

/// Applies `files` to PostgreSQL, all in one transaction that first takes a
/// transaction-scoped advisory lock, so that services starting together
/// apply each migration once. sqlx's own lock is a session lock
/// (`pg_advisory_lock`), which through PgBouncer in transaction pooling
/// would be taken on one server connection and released (or not) on
/// another; a transaction keeps one server connection throughout. The key
/// is sqlx's (of the database's name), so a migrator of an earlier version
/// still waits for this one. Each migration runs in a savepoint; a failure
/// leaves the database as it was. Migrations marked `-- no-transaction`
/// cannot run this way and are refused.
async fn migrate_postgres(pool: &PgPool, files: &[Embedded]) -> anyhow::Result<()> {
    let mut migrator = migrator(files).await?;
    if let Some(m) = migrator.iter().find(|m| m.no_tx) {
        anyhow::bail!(
            "migration {} is marked -- no-transaction; PostgreSQL migrations run in one transaction",
            m.version
        );
    }
    migrator.set_locking(false);
    let mut tx = pool.begin().await?;
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(migration_lock_id(&database))
        .execute(&mut *tx)
        .await?;
    migrator.run_direct(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// The advisory lock key sqlx's migrator takes for `database`
/// (sqlx-postgres 0.8, `migrate.rs`, `generate_lock_id`): 0x3d32ad9e times
/// the CRC-32 (ISO-HDLC) of the name.
fn migration_lock_id(database: &str) -> i64 {
    let mut crc = !0u32;
    for byte in database.bytes() {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    0x3d32_ad9e * i64::from(!crc)
}

/// The URL without its `pgbouncer` parameter, and whether that asked for
/// PgBouncer in transaction pooling (`pgbouncer=true`).
fn pgbouncer_parameter(url: &str) -> anyhow::Result<(String, bool)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), false));
    };
    let mut through = false;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("pgbouncer", "true" | "1")) => through = true,
            Some(("pgbouncer", "false" | "0")) => {}
            Some(("pgbouncer", other)) => {
                anyhow::bail!(
                    "the database URL's pgbouncer parameter is true or false, not {other}"
                )
            }
            _ => kept.push(pair),
        }
    }
    Ok(if kept.is_empty() {
        (base.to_owned(), through)
    } else {
        (format!("{base}?{}", kept.join("&")), through)
    })
}

/// PostgreSQL's connect options for `url`; with `pgbouncer=true`, through a
/// relay of this process that makes sqlx's statements safe in PgBouncer's
/// transaction pooling (see [`pgbouncer`]).
async fn postgres_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let (url, through_pgbouncer) = pgbouncer_parameter(url)?;
    let options =
        PgConnectOptions::from_str(&url)?.log_statements(tracing::log::LevelFilter::Trace);
    if !through_pgbouncer {
        return Ok(options);
    }
    if options.get_socket().is_some() {
        anyhow::bail!("pgbouncer=true needs PgBouncer's TCP address, not a Unix socket");
    }
    if matches!(
        options.get_ssl_mode(),
        PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull
    ) {
        anyhow::bail!(
            "pgbouncer=true does not encrypt the link to PgBouncer; run PgBouncer beside the service and drop sslmode"
        );
    }
    let target = format!("{}:{}", options.get_host(), options.get_port());
    let port = pgbouncer::start(target).await?;
    Ok(options
        .host("127.0.0.1")
        .port(port)
        .ssl_mode(PgSslMode::Disable))
}

/// How long a request waits for a pooled connection before its 503.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the watcher pings PostgreSQL while it answers, and while it
/// does not: how long a lost server takes to be noticed, and a returned one.
const WATCH_EVERY: Duration = Duration::from_millis(500);
const WATCH_EVERY_WHILE_DOWN: Duration = Duration::from_millis(250);
/// The longest a ping or a connect of the watcher may take.
const WATCH_TIMEOUT: Duration = Duration::from_secs(1);
/// Failed probes in a row before the circuit opens: one lost packet or a
/// slow moment of a busy server does not turn every request away.
const TRIP_AFTER: u32 = 2;

impl Db {
    /// Connects to `url` (`postgres://…`, `mysql://…`/`mariadb://…` or
    /// `sqlite://…`), creating the database (or the SQLite file and its
    /// folder) when missing, and applies the service's migrations.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        migrations: Migrations<'_>,
    ) -> anyhow::Result<Self> {
        let health = Arc::new(Health::default());
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = postgres_options(url).await?;
            create_postgres_database(&options).await?;
            let pool = PgPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
                .connect_with(options.clone())
                .await?;
            let tripped = PgPoolOptions::new().connect_lazy_with(options.clone());
            tripped.close().await;
            migrate_postgres(&pool, migrations.postgres).await?;
            watch::<sqlx::PgConnection>(options, Arc::downgrade(&health), pool.clone());
            Self {
                pool: Pool::Postgres(pool),
                tripped: Some(Pool::Postgres(tripped)),
                health,
            }
        } else if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            let options = mysql_options(url)?;
            create_mysql_database(&options).await?;
            let pool = MySqlPoolOptions::new()
                .max_connections(max_connections)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .after_connect(|conn, _| {
                    Box::pin(async move {
                        conn.execute(MYSQL_SESSION).await?;
                        Ok(())
                    })
                })
                .after_release(|conn, _| Box::pin(async move { Ok(!conn.is_in_transaction()) }))
                .connect_with(options.clone())
                .await?;
            let tripped = MySqlPoolOptions::new().connect_lazy_with(options.clone());
            tripped.close().await;
            // sqlx's MySQL migrator holds a named lock (`GET_LOCK`) while it
            // runs, so services starting together apply each migration once.
            // MySQL commits DDL as it runs it: a migration that fails half
            // way is not undone, and is refused again at the next start.
            migrator(migrations.mysql).await?.run(&pool).await?;
            watch::<sqlx::MySqlConnection>(options, Arc::downgrade(&health), pool.clone());
            Self {
                pool: Pool::MySql(pool),
                tripped: Some(Pool::MySql(tripped)),
                health,
            }
        } else if url.starts_with("sqlite:") {
            let pool = connect_sqlite(url, max_connections, &health).await?;
            migrator(migrations.sqlite).await?.run(&pool).await?;
            Self {
                pool: Pool::Sqlite(pool),
                tripped: None,
                health,
            }
        } else {
            anyhow::bail!(
                "unsupported database URL (expected postgres://, mysql:// or sqlite://): {}",
                redact(url)
            );
        };
        Ok(db)
    }

    /// The pool to run a query on: the real one, or, while the server is out
    /// of reach, a closed one that refuses at once.
    pub fn pool(&self) -> &Pool {
        match &self.tripped {
            Some(tripped) if self.health.unreachable.load(Ordering::Relaxed) => tripped,
            _ => &self.pool,
        }
    }

    /// Whether the database is PostgreSQL.
    pub fn is_postgres(&self) -> bool {
        matches!(self.pool, Pool::Postgres(_))
    }

    /// Whether the database is MySQL or MariaDB.
    pub fn is_mysql(&self) -> bool {
        matches!(self.pool, Pool::MySql(_))
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        with_db!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
    }

    /// `postgres`, `mysql` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Postgres(_) => "postgres",
            Pool::Sqlite(_) => "sqlite",
            Pool::MySql(_) => "mysql",
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Postgres(pool) => pool.close().await,
            Pool::Sqlite(pool) => pool.close().await,
            Pool::MySql(pool) => pool.close().await,
        }
    }
}

/// What is known of a database's health, shared with its pool's hooks and
/// its watcher.
#[derive(Debug, Default)]
struct Health {
    /// PostgreSQL, MySQL: the watcher cannot reach the server.
    unreachable: AtomicBool,
    /// SQLite: connections opened at or before this instant (nanoseconds
    /// since [`epoch`]) may have been opened read-only.
    suspect_until: AtomicU64,
}

/// The instant the process' clock readings count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn nanos_since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// Pings the server on a connection of its own (not the pool's, which a
/// busy service may have exhausted) and trips or restores the circuit. It
/// stops when the service's database is dropped or closed.
fn watch<C: Connection>(
    options: <C as Connection>::Options,
    health: Weak<Health>,
    pool: sqlx::Pool<C::Database>,
) where
    C::Database: sqlx::Database<Connection = C>,
{
    tokio::spawn(async move {
        let mut conn: Option<C> = None;
        let mut failed_in_a_row = 0;
        loop {
            if pool.is_closed() {
                break;
            }
            let reached = probe(&options, &mut conn).await;
            let Some(health) = health.upgrade() else {
                break;
            };
            let reached = match reached {
                Some(false) => {
                    failed_in_a_row += 1;
                    if failed_in_a_row >= TRIP_AFTER {
                        Some(false)
                    } else {
                        None
                    }
                }
                Some(true) => {
                    failed_in_a_row = 0;
                    Some(true)
                }
                None => None,
            };
            if let Some(reached) = reached {
                let was = health.unreachable.swap(!reached, Ordering::Relaxed);
                if was == reached {
                    if reached {
                        tracing::info!("the database answers again");
                    } else {
                        tracing::warn!(
                            "the database cannot be reached; answering 503 at once until it can"
                        );
                    }
                }
            }
            let every = if health.unreachable.load(Ordering::Relaxed) {
                WATCH_EVERY_WHILE_DOWN
            } else {
                WATCH_EVERY
            };
            drop(health);
            tokio::time::sleep(every).await;
        }
        if let Some(conn) = conn {
            let _ = conn.close().await;
        }
    });
}

/// Whether the server answers: `Some(false)` only when it is out of reach
/// (refused, reset, shutting down, silent); `None` when it answered with an
/// error that says nothing of its reachability (e.g. too many connections).
async fn probe<C: Connection>(
    options: &<C as Connection>::Options,
    conn: &mut Option<C>,
) -> Option<bool> {
    if let Some(c) = conn.as_mut() {
        match tokio::time::timeout(WATCH_TIMEOUT, c.ping()).await {
            Ok(Ok(())) => return Some(true),
            _ => *conn = None,
        }
    }
    match tokio::time::timeout(WATCH_TIMEOUT, options.connect()).await {
        Ok(Ok(c)) => {
            *conn = Some(c);
            Some(true)
        }
        // A full server is busy, not gone: the pool may still hold connections.
        Ok(Err(sqlx::Error::Database(e))) if too_many_connections(e.as_ref()) => None,
        Ok(Err(e)) if fault(&e) == Some(Fault::Unreachable) => Some(false),
        Ok(Err(_)) => None,
        Err(_) => Some(false),
    }
}

/// Whether the server refused a connection for having too many.
fn too_many_connections(e: &dyn sqlx::error::DatabaseError) -> bool {
    match e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
        Some(my) => my.number() == 1040,
        None => e.code().as_deref() == Some("53300"),
    }
}

/// What every MySQL connection runs first (see the module's header).
const MYSQL_SESSION: &str = "SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES,PIPES_AS_CONCAT,NO_BACKSLASH_ESCAPES'); \
     SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED";

/// MySQL's character set and collation for every database it creates (the
/// tables' columns take it, and a column's collation decides a comparison
/// with a parameter): case- and accent-sensitive, trailing spaces counted.
/// Not a binary collation: MySQL flags a binary-collated column as binary,
/// and sqlx then refuses to read it as text. Unicode collation does count
/// a few strings equal that differ in bytes (canonically equivalent forms,
/// ignorable code points such as U+200B); every key the services compare
/// (idempotency keys, codes, SKUs, plugin names, usernames) is ASCII by
/// validation. MariaDB 10.10 or later.
const MYSQL_CHARSET: &str = "utf8mb4";
const MYSQL_COLLATION: &str = "utf8mb4_uca1400_nopad_as_cs";
const MYSQL_CONNECTION_COLLATION: &str = "utf8mb4_bin";

/// MySQL's connect options for `url`: UTC, `utf8mb4`.
fn mysql_options(url: &str) -> anyhow::Result<MySqlConnectOptions> {
    let url = url
        .strip_prefix("mariadb://")
        .map_or_else(|| url.to_owned(), |rest| format!("mysql://{rest}"));
    Ok(MySqlConnectOptions::from_str(&url)?
        .charset(MYSQL_CHARSET)
        .collation(MYSQL_CONNECTION_COLLATION)
        .timezone(Some("+00:00".to_owned()))
        .pipes_as_concat(true)
        .log_statements(tracing::log::LevelFilter::Trace))
}

/// Creates the URL's MySQL database when it does not exist yet, `utf8mb4`
/// with a binary collation.
async fn create_mysql_database(options: &MySqlConnectOptions) -> anyhow::Result<()> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        anyhow::bail!("a MySQL database URL names its database: mysql://user@host/<database>");
    };
    match options.connect().await {
        Ok(conn) => return Ok(conn.close().await?),
        Err(sqlx::Error::Database(e))
            if e.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
                .is_some_and(|my| my.number() == 1049) => {}
        Err(e) => return Err(e.into()),
    }
    // Every user may connect to information_schema.
    let mut admin = options
        .clone()
        .database("information_schema")
        .connect()
        .await?;
    let create = format!(
        "CREATE DATABASE IF NOT EXISTS `{}` CHARACTER SET {MYSQL_CHARSET} COLLATE {MYSQL_COLLATION}",
        name.replace('`', "``")
    );
    sqlx::query(&create).execute(&mut admin).await?;
    admin.close().await?;
    Ok(())
}

/// Creates the URL's database when it does not exist yet.
async fn create_postgres_database(options: &PgConnectOptions) -> anyhow::Result<()> {
    let Some(name) = options.get_database().map(str::to_owned) else {
        return Ok(());
    };
    match options.connect().await {
        Ok(conn) => return Ok(conn.close().await?),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {}
        Err(e) => return Err(e.into()),
    }
    let mut admin = options.clone().database("postgres").connect().await?;
    let create = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    match sqlx::query(&create).execute(&mut admin).await {
        // Another process created it meanwhile.
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42P04") => {}
        other => {
            other?;
        }
    }
    admin.close().await?;
    Ok(())
}

async fn connect_sqlite(
    url: &str,
    max_connections: u32,
    health: &Arc<Health>,
) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    let file = options.get_filename().to_owned();
    if let Some(dir) = file.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let watch = SqliteWatch {
        health: health.clone(),
        file: Arc::new(file),
    };
    let (on_connect, on_acquire, on_release) = (watch.clone(), watch.clone(), watch);
    Ok(SqlitePoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .after_connect(move |_, _| {
            let watch = on_connect.clone();
            Box::pin(async move {
                watch.opened();
                Ok(())
            })
        })
        .before_acquire(move |conn, meta| {
            let watch = on_acquire.clone();
            Box::pin(async move { Ok(watch.reusable(conn, meta)) })
        })
        .after_release(move |conn, meta| {
            let watch = on_release.clone();
            Box::pin(async move {
                // A dropped transaction queues its rollback: let it run
                // before judging (only then, so an ordinary release costs no
                // round trip to the connection's worker); a connection it
                // could not end is still inside one.
                if conn.is_in_transaction() {
                    conn.ping().await?;
                }
                Ok(watch.reusable(conn, meta))
            })
        })
        .connect_with(options)
        .await?)
}

/// How far past a failed write check connections count as opened during the
/// fault.
const SUSPECT_MARGIN: Duration = Duration::from_secs(1);

/// Keeps an SQLite pool free of connections a disk fault left unusable.
#[derive(Debug, Clone)]
struct SqliteWatch {
    health: Arc<Health>,
    file: Arc<PathBuf>,
}

impl SqliteWatch {
    /// A new connection: if the file cannot be written now, SQLite has opened
    /// it read-only, and stays so.
    fn opened(&self) {
        if !self.writable() {
            tracing::warn!(file = %self.file.display(), "the database file cannot be written; writes answer 503 until it can");
            // The pool stamps a connection's creation only after this hook
            // has run: the window reaches a little past now.
            self.health.suspect_until.store(
                nanos_since_epoch(Instant::now() + SUSPECT_MARGIN),
                Ordering::Relaxed,
            );
        }
    }

    /// Whether a connection may serve another request: not when it is still
    /// inside a transaction, nor when it was opened read-only by a fault that
    /// has passed.
    fn reusable(&self, conn: &sqlx::SqliteConnection, meta: PoolConnectionMetadata) -> bool {
        if conn.is_in_transaction() {
            tracing::warn!("closing a database connection left inside a transaction");
            return false;
        }
        let suspect_until = self.health.suspect_until.load(Ordering::Relaxed);
        if suspect_until == 0 {
            return true;
        }
        let opened = Instant::now()
            .checked_sub(meta.age)
            .map_or(0, nanos_since_epoch);
        // Opened during the fault: keep it only while the fault lasts.
        opened > suspect_until || !self.writable()
    }

    fn writable(&self) -> bool {
        match std::fs::OpenOptions::new().write(true).open(&*self.file) {
            Ok(_) => true,
            // In memory, or not created yet: nothing read-only about it.
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }
}

/// The name of the unique constraint (PostgreSQL), the key (MySQL) or the
/// `table.column` (SQLite) that an insert or update violated, if that is
/// what failed.
pub fn unique_violation(err: &sqlx::Error) -> Option<String> {
    let sqlx::Error::Database(db) = err else {
        return None;
    };
    if !db.is_unique_violation() {
        return None;
    }
    if let Some(name) = db.constraint() {
        return Some(name.to_owned());
    }
    // MySQL: "Duplicate entry 'a@b.c' for key 'users_email_key'"
    if let Some((_, key)) = db.message().rsplit_once(" for key '") {
        return Some(key.trim_end_matches('\'').to_owned());
    }
    // SQLite: "UNIQUE constraint failed: users.email"
    db.message().rsplit(": ").next().map(str::to_owned)
}

/// A database URL with its password hidden, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A failure of the database itself, as opposed to one of the statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The server cannot be reached, is shutting down, or cannot write right
    /// now (read-only, busy, an I/O error): another try may succeed.
    Unreachable,
    /// Its disk is full.
    DiskFull,
    /// A concurrent transaction got in the way (a deadlock, a serialization
    /// failure, a lock wait that timed out): the same write may succeed
    /// right after. Checkout retries these itself; elsewhere they are
    /// answered 503 with `Retry-After`, not 500.
    Conflict,
}

/// What kind of fault `err` is, if it is one.
pub fn fault(err: &sqlx::Error) -> Option<Fault> {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => Some(Fault::Unreachable),
        // A connection cut mid-message reads as a protocol error.
        sqlx::Error::Protocol(_) => Some(Fault::Unreachable),
        sqlx::Error::Database(db) => {
            let code = db.code();
            let code = code.as_deref().unwrap_or_default();
            if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite: the primary result code is the low byte of the
                // extended one. FULL; BUSY, LOCKED, READONLY, IOERR, CANTOPEN.
                return match code.parse::<i32>().map(|n| n & 0xff) {
                    Ok(13) => Some(Fault::DiskFull),
                    Ok(5 | 6 | 8 | 10 | 14) => Some(Fault::Unreachable),
                    _ => None,
                };
            }
            if let Some(my) = db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>() {
                return mysql_fault(my.number(), my.message());
            }
            match code {
                // Serialization failure, deadlock, lock not available.
                "40001" | "40P01" | "55P03" => Some(Fault::Conflict),
                "53100" => Some(Fault::DiskFull),
                // Connection exceptions (class 08), admin or crash shutdown,
                // cannot connect now, too many connections, a read-only
                // (standby) server, an I/O error.
                c if c.starts_with("08") => Some(Fault::Unreachable),
                "57P01" | "57P02" | "57P03" | "53300" | "25006" | "58030" => {
                    Some(Fault::Unreachable)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// A MySQL/MariaDB server error, by its number: disk full (the table or the
/// disk is full, or a write failed with ENOSPC), or out of reach (too many
/// connections, shutting down, killed, read-only).
fn mysql_fault(number: u16, message: &str) -> Option<Fault> {
    match number {
        1021 | 1114 => Some(Fault::DiskFull),
        1026 | 1030
            if message.contains("error 28 ")
                || message.contains("errno: 28")
                || message.contains("No space left") =>
        {
            Some(Fault::DiskFull)
        }
        1040 | 1053 | 1077 | 1152 | 1158..=1161 | 1290 | 1836 | 1927 | 4031 => {
            Some(Fault::Unreachable)
        }
        // A lock wait that timed out, a deadlock.
        1205 | 1213 => Some(Fault::Conflict),
        _ => None,
    }
}

/// How long a client is asked to wait before retrying after a fault.
const RETRY_AFTER_SECS: &str = "1";

/// The answer for a database failure: 503 `database_unavailable` when the
/// database cannot be reached or cannot write now (or a concurrent
/// transaction got in the way), 507 `storage_full` when
/// its disk is full (both with `Retry-After`), 500 otherwise. The cause is
/// for the log.
pub fn failure_problem(err: &sqlx::Error) -> crate::Problem {
    let retry_after = HeaderValue::from_static(RETRY_AFTER_SECS);
    match fault(err) {
        Some(Fault::Unreachable) => crate::Problem::unavailable(
            "database_unavailable",
            "the database cannot be reached right now; retry shortly",
        )
        .with_header(header::RETRY_AFTER, retry_after),
        Some(Fault::Conflict) => crate::Problem::unavailable(
            "database_unavailable",
            "a concurrent change got in the way of this one; retry shortly",
        )
        .with_header(header::RETRY_AFTER, retry_after),
        Some(Fault::DiskFull) => crate::Problem::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "storage_full",
            "the database has no space left to write; nothing was changed",
        )
        .with_header(header::RETRY_AFTER, retry_after),
        None => crate::Problem::internal(),
    }
}

/// Runs `$body` with `$tx` bound to a new write transaction on whichever
/// backend `$db` is: PostgreSQL's and MySQL's default (READ COMMITTED), or
/// SQLite's `BEGIN IMMEDIATE`,
/// which takes the write lock at once so a transaction that reads before it
/// writes cannot fail to upgrade its lock. The body commits.
#[macro_export]
macro_rules! with_tx {
    ($db:expr, $tx:ident => $body:expr) => {
        match $crate::db::Db::pool($db) {
            $crate::db::Pool::Postgres(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                $body
            }
            $crate::db::Pool::Sqlite(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
                $body
            }
            $crate::db::Pool::MySql(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                $body
            }
        }
    };
}

/// The current time as both backends store it (microseconds): a value
/// answered right after a write equals the value read back later.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::SubsecRound;
    chrono::Utc::now().trunc_subsecs(6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_told_apart_from_statement_errors() {
        assert_eq!(fault(&sqlx::Error::PoolTimedOut), Some(Fault::Unreachable));
        assert_eq!(fault(&sqlx::Error::RowNotFound), None);
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert_eq!(fault(&sqlx::Error::Io(reset)), Some(Fault::Unreachable));
        assert_eq!(failure_problem(&sqlx::Error::PoolClosed).status, 503);
        assert!(
            failure_problem(&sqlx::Error::PoolClosed)
                .headers
                .iter()
                .any(|(name, _)| name == header::RETRY_AFTER)
        );
        assert_eq!(failure_problem(&sqlx::Error::RowNotFound).status, 500);
    }

    #[test]
    fn mysql_server_errors_are_told_apart() {
        assert_eq!(
            mysql_fault(1040, "Too many connections"),
            Some(Fault::Unreachable)
        );
        assert_eq!(
            mysql_fault(1927, "Connection was killed"),
            Some(Fault::Unreachable)
        );
        assert_eq!(
            mysql_fault(1114, "The table 'orders' is full"),
            Some(Fault::DiskFull)
        );
        assert_eq!(
            mysql_fault(
                1030,
                "Got error 28 \"No space left on device\" from storage engine InnoDB"
            ),
            Some(Fault::DiskFull)
        );
        assert_eq!(
            mysql_fault(1030, "Got error 128 from storage engine InnoDB"),
            None
        );
        // A packet over max_allowed_packet is the statement's, not the server's.
        assert_eq!(
            mysql_fault(1153, "Got a packet bigger than 'max_allowed_packet' bytes"),
            None
        );
        assert_eq!(
            mysql_fault(1062, "Duplicate entry 'a' for key 'PRIMARY'"),
            None
        );
    }

    #[test]
    fn the_migration_lock_is_sqlxs() {
        // CRC-32/ISO-HDLC's check value.
        assert_eq!(migration_lock_id("123456789"), 0x3d32_ad9e * 0xCBF4_3926);
    }

    #[test]
    fn the_pgbouncer_parameter_is_taken_out_of_the_url() {
        let url = "postgres://u@h:6432/db";
        assert_eq!(
            pgbouncer_parameter(url).expect("a valid URL"),
            (url.to_owned(), false)
        );
        assert_eq!(
            pgbouncer_parameter("postgres://u@h:6432/db?pgbouncer=true").expect("a valid URL"),
            (url.to_owned(), true)
        );
        assert_eq!(
            pgbouncer_parameter(
                "postgres://u@h/db?sslmode=disable&pgbouncer=true&application_name=x"
            )
            .expect("a valid URL"),
            (
                "postgres://u@h/db?sslmode=disable&application_name=x".to_owned(),
                true
            )
        );
        assert!(pgbouncer_parameter("postgres://u@h/db?pgbouncer=yes").is_err());
    }
}
