//! Databases: a service runs on SQLite (the embedded default) or PostgreSQL,
//! chosen by its URL. Queries that read the same on both are written once with
//! [`with_db!`](crate::with_db); the rest live in each store's backend module.

use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, PgPool, SqlitePool};

/// A pool on one of the two backends.
#[derive(Debug, Clone)]
pub enum Db {
    /// PostgreSQL, for production.
    Postgres(PgPool),
    /// SQLite, the embedded default.
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$pool` bound to the pool of whichever backend `$db` is.
/// The body is compiled once per backend, so each expansion is checked against
/// its own driver's types.
#[macro_export]
macro_rules! with_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($pool) => $body,
            $crate::db::Db::Sqlite($pool) => $body,
        }
    };
}

/// The migrations of one service, one set per backend.
#[derive(Debug)]
pub struct Migrations<'a> {
    /// For PostgreSQL.
    pub postgres: &'a Migrator,
    /// For SQLite.
    pub sqlite: &'a Migrator,
}

impl Db {
    /// Connects to `url` (`postgres://…` or `sqlite://…`), creating the
    /// database (or the SQLite file and its folder) when missing, and applies
    /// the service's migrations.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        migrations: Migrations<'_>,
    ) -> anyhow::Result<Self> {
        let db = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Self::Postgres(connect_postgres(url, max_connections).await?)
        } else if url.starts_with("sqlite:") {
            Self::Sqlite(connect_sqlite(url, max_connections).await?)
        } else {
            anyhow::bail!(
                "unsupported database URL (expected postgres:// or sqlite://): {}",
                redact(url)
            );
        };
        match &db {
            Self::Postgres(pool) => migrations.postgres.run(pool).await?,
            Self::Sqlite(pool) => migrations.sqlite.run(pool).await?,
        }
        Ok(db)
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        with_db!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))
    }

    /// `postgres` or `sqlite`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgres",
            Self::Sqlite(_) => "sqlite",
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        with_db!(self, pool => pool.close().await)
    }
}

async fn connect_postgres(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let options = PgConnectOptions::from_str(url)?.log_statements(tracing::log::LevelFilter::Trace);
    create_postgres_database(&options).await?;
    Ok(PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await?)
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

async fn connect_sqlite(url: &str, max_connections: u32) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10));
    if let Some(dir) = options
        .get_filename()
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)?;
    }
    Ok(SqlitePoolOptions::new()
        .max_connections(max_connections)
        .connect_with(options)
        .await?)
}

/// The name of the unique constraint (PostgreSQL) or the `table.column`
/// (SQLite) that an insert or update violated, if that is what failed.
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

/// The answer for a database failure: 503 when the database cannot be
/// reached (the client may retry), 500 otherwise. The cause is for the log.
pub fn failure_problem(err: &sqlx::Error) -> crate::Problem {
    match err {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
            crate::Problem::unavailable(
                "database_unavailable",
                "the database cannot be reached right now",
            )
        }
        _ => crate::Problem::internal(),
    }
}

/// Runs `$body` with `$tx` bound to a new write transaction on whichever
/// backend `$db` is: PostgreSQL's default, or SQLite's `BEGIN IMMEDIATE`,
/// which takes the write lock at once so a transaction that reads before it
/// writes cannot fail to upgrade its lock. The body commits.
#[macro_export]
macro_rules! with_tx {
    ($db:expr, $tx:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Postgres(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin().await?;
                $body
            }
            $crate::db::Db::Sqlite(pool) => {
                #[allow(unused_mut)]
                let mut $tx = pool.begin_with("BEGIN IMMEDIATE").await?;
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
