//! The outbox relay: drains a service's `outbox` table to a [`Sink`], at
//! least once and in commit order.
//!
//! Read top to bottom:
//! 1. [`Relay::run`] loops until the stop signal: one [`Relay::pass`], then a
//!    wait — for a poke ([`Relay::wake`], which the HTTP layer gives after
//!    every successful write), the poll interval, or a capped exponential
//!    backoff after a failure. Every second it refreshes the backlog gauges;
//!    now and then it prunes sent rows older than the retention.
//! 2. A pass takes batches, oldest `seq` first, until none is left. One
//!    batch is one database transaction that makes this relay the only
//!    drainer while it runs — PostgreSQL: `pg_try_advisory_xact_lock` (a
//!    replica that does not get it backs off; no two replicas interleave) and
//!    `FOR UPDATE SKIP LOCKED`; MySQL: the row of `outbox_relay` locked
//!    `FOR UPDATE SKIP LOCKED` (the same back-off); SQLite: `BEGIN
//!    IMMEDIATE` — reads the unsent
//!    rows, publishes them and waits for every confirm, and only then marks
//!    them sent and commits. A crash anywhere before the commit leaves the
//!    rows unsent: they go out again (same event id), never get lost.
//!
//! Why this keeps an order's events in order: an order's later event is
//! written by a transaction that saw the earlier one committed, so it has a
//! larger `seq`; a single drainer publishes in `seq` order on one channel,
//! and RabbitMQ keeps a channel's order into each queue.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::http::Method;
use axum::middleware::Next;
use chrono::{DateTime, Utc};
use rand::Rng;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{MySqlPool, PgPool, SqlitePool};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::amqp::DEFAULT_EXCHANGE;
use super::sink::{AmqpSink, Sink};
use crate::db::{Db, Pool};
use crate::ops::Check;

/// The relay's settings as environment variables (or flags); each service
/// flattens this into its own configuration.
#[derive(Debug, Clone, clap::Args)]
pub struct RelaySettings {
    /// RabbitMQ to publish events to (`amqp://user:pass@host:5672/%2f`).
    /// Unset: events go to in-process subscribers and the log.
    #[arg(long, env = "SHOPEEZY_AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,

    /// The topic exchange events are published to (declared durable).
    #[arg(long, env = "SHOPEEZY_AMQP_EXCHANGE", default_value = DEFAULT_EXCHANGE)]
    pub amqp_exchange: String,

    /// How often the relay looks for events written by another replica, in
    /// ms (this replica's own writes wake it at once).
    #[arg(long, env = "SHOPEEZY_OUTBOX_POLL_MS", default_value_t = 100)]
    pub outbox_poll_ms: u64,

    /// Most events published per batch (one transaction, one wait for confirms).
    #[arg(long, env = "SHOPEEZY_OUTBOX_BATCH", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub outbox_batch: u32,

    /// How long sent events stay in the outbox before they are deleted, in hours.
    #[arg(long, env = "SHOPEEZY_OUTBOX_RETENTION_HOURS", default_value_t = 168)]
    pub outbox_retention_hours: u64,

    /// Fault injection for tests; never set from the environment.
    #[arg(skip)]
    pub faults: Faults,
}

/// Faults a test can make the relay commit.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Stop the relay after a batch was published and confirmed but before it
    /// is marked sent, as if the process died at the worst moment.
    pub crash_after_publish: bool,
}

/// Everything a [`Relay`] needs to know.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The service whose outbox this is (`host`, `account`): a metrics label
    /// and part of the broker connection's name.
    pub service: &'static str,
    /// RabbitMQ, or `None` for in-process subscribers and the log.
    pub amqp_url: Option<String>,
    /// The exchange events are published to.
    pub exchange: String,
    /// The longest wait between two looks at the outbox.
    pub poll: Duration,
    /// Most events per batch.
    pub batch_size: u32,
    /// How long sent rows are kept.
    pub retention: Duration,
    /// How often sent rows are pruned.
    pub prune_every: Duration,
    /// How long publishing a batch (until its last confirm) may take.
    pub publish_timeout: Duration,
    /// The first wait after a failure; it doubles up to `backoff_max`.
    pub backoff_min: Duration,
    /// The longest wait after failures.
    pub backoff_max: Duration,
    /// Faults to inject (tests).
    pub faults: Faults,
}

impl RelaySettings {
    /// The relay configuration of `service`.
    pub fn relay_config(&self, service: &'static str) -> RelayConfig {
        let retention = Duration::from_secs(self.outbox_retention_hours.saturating_mul(3600));
        RelayConfig {
            service,
            amqp_url: self.amqp_url.clone().filter(|u| !u.trim().is_empty()),
            exchange: self.amqp_exchange.clone(),
            poll: Duration::from_millis(self.outbox_poll_ms.max(1)),
            batch_size: self.outbox_batch.max(1),
            retention,
            prune_every: (retention / 10).clamp(Duration::from_secs(1), Duration::from_secs(600)),
            // Below SQLite's busy timeout (10 s): a batch holds the write lock
            // while it waits for confirms.
            publish_timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            faults: self.faults.clone(),
        }
    }
}

/// One outbox row: a CloudEvents document and where it is routed.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    /// The row's position in commit order (per backend, see the module doc).
    pub seq: i64,
    /// The event id (AMQP `message_id`).
    pub id: Uuid,
    /// The routing key, e.g. `order.placed`.
    pub routing_key: String,
    /// The CloudEvents type (AMQP `type`), e.g. `shopeezy.order.placed`.
    pub event_type: String,
    /// What the event is about, e.g. `orders/<id>`.
    pub subject: String,
    /// The whole CloudEvents JSON document, as published.
    pub document: Value,
    /// When the event was written (inside its transaction).
    pub created_at: DateTime<Utc>,
}

#[derive(sqlx::FromRow)]
struct Row {
    seq: i64,
    id: Uuid,
    routing_key: String,
    event_type: String,
    subject: String,
    payload: Json<Value>,
    created_at: DateTime<Utc>,
}

impl From<Row> for OutboxEvent {
    fn from(row: Row) -> Self {
        Self {
            seq: row.seq,
            id: row.id,
            routing_key: row.routing_key,
            event_type: row.event_type,
            subject: row.subject,
            document: row.payload.0,
            created_at: row.created_at,
        }
    }
}

const COLUMNS: &str = "seq, id, routing_key, event_type, subject, payload, created_at";

/// The advisory lock (two-int form: a key space apart from the checkout's
/// single-bigint locks) that makes one relay per database the drainer.
const LOCK_CLASS: i32 = 0x5348_4f50; // "SHOP"
const LOCK_ID: i32 = 0x4f42_5831; // "OBX1"

/// How many sent rows one prune statement deletes.
const PRUNE_CHUNK: u64 = 1000;

/// The outbox relay of one service replica; cheap to clone.
#[derive(Clone)]
pub struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    config: RelayConfig,
    wake: Notify,
    subscribers: broadcast::Sender<OutboxEvent>,
    /// Why the broker is unavailable (`None`: the last attempt worked).
    broker_error: Mutex<Option<String>>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("service", &self.inner.config.service)
            .field("amqp", &self.inner.config.amqp_url.is_some())
            .field("exchange", &self.inner.config.exchange)
            .finish()
    }
}

/// What one batch did.
enum Batch {
    /// Published this many events.
    Sent(usize),
    /// Another replica is draining right now.
    Busy,
    /// The test fault fired: published, not marked.
    Crashed,
}

/// Why a pass failed.
enum Failure {
    Broker(anyhow::Error),
    Database(sqlx::Error),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Self::Database(e)
    }
}

impl Relay {
    /// A relay of `db`'s outbox; nothing runs until [`Relay::spawn`].
    pub fn new(db: Db, config: RelayConfig) -> Self {
        let (subscribers, _) = broadcast::channel(4096);
        let broker_error = config
            .amqp_url
            .as_ref()
            .map(|_| "not connected yet".to_owned());
        Self {
            inner: Arc::new(Inner {
                db,
                config,
                wake: Notify::new(),
                subscribers,
                broker_error: Mutex::new(broker_error),
            }),
        }
    }

    /// Asks the relay to look at the outbox now (after a commit). Cheap; many
    /// pokes while it is busy make one more pass.
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    /// The events this relay delivers in-process (embedded mode: no
    /// `SHOPEEZY_AMQP_URL`), from now on. A subscriber that falls more than
    /// 4096 events behind is told how many it missed
    /// ([`broadcast::error::RecvError::Lagged`]); the log has every one.
    pub fn subscribe(&self) -> broadcast::Receiver<OutboxEvent> {
        self.inner.subscribers.subscribe()
    }

    /// The broker's state for `/readyz` (never required: events wait in the
    /// outbox); `None` in embedded mode.
    pub fn broker_check(&self) -> Option<Check> {
        self.inner.config.amqp_url.as_ref()?;
        let error = self
            .inner
            .broker_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Some(Check::from_result(false, error.map_or(Ok(()), Err)))
    }

    /// Runs the relay on its own task until `stop` resolves.
    pub fn spawn(&self, stop: impl Future<Output = ()> + Send + 'static) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move { this.run(stop).await })
    }

    /// Drains the outbox until `stop` resolves; the batch in progress is
    /// finished first.
    pub async fn run(&self, stop: impl Future<Output = ()> + Send) {
        let config = &self.inner.config;
        let mut sink = match &config.amqp_url {
            Some(url) => Sink::Amqp(AmqpSink::new(
                url,
                &config.exchange,
                config.service,
                config.publish_timeout,
            )),
            None => Sink::InProcess(self.inner.subscribers.clone()),
        };
        tracing::info!(
            service = config.service, sink = if config.amqp_url.is_some() { "amqp" } else { "in-process" },
            exchange = %config.exchange, "outbox relay started"
        );
        tokio::pin!(stop);
        let mut backoff = config.backoff_min;
        let mut measured: Option<Instant> = None;
        let mut pruned: Option<Instant> = None;
        loop {
            let wait = match self.pass(&mut sink).await {
                Ok(None) => {
                    backoff = config.backoff_min;
                    Some(config.poll)
                }
                // Another replica drains; look again soon in case it missed
                // what this replica just committed.
                Ok(Some(Batch::Busy)) => {
                    backoff = config.backoff_min;
                    Some(config.poll.min(Duration::from_millis(20)))
                }
                Ok(Some(Batch::Crashed)) => None,
                Ok(Some(Batch::Sent(_))) => Some(Duration::ZERO),
                Err(failure) => {
                    self.record_failure(failure);
                    let jitter = rand::thread_rng().gen_range(0..=backoff.as_millis() as u64 / 4);
                    let wait = backoff + Duration::from_millis(jitter);
                    backoff = (backoff * 2).min(config.backoff_max);
                    Some(wait)
                }
            };
            let Some(wait) = wait else {
                tracing::warn!(
                    service = config.service,
                    "outbox relay crashed on purpose after publishing (test fault)"
                );
                sink.close().await;
                return;
            };
            if measured.is_none_or(|at| at.elapsed() >= Duration::from_secs(1)) {
                measured = Some(Instant::now());
                self.measure_backlog().await;
            }
            if pruned.is_none_or(|at| at.elapsed() >= config.prune_every) {
                pruned = Some(Instant::now());
                self.prune().await;
            }
            let failing = backoff > config.backoff_min;
            tokio::select! {
                () = &mut stop => break,
                // After a failure only the backoff counts: pokes must not
                // hammer a broker that is down.
                () = self.inner.wake.notified(), if !failing => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        sink.close().await;
        tracing::info!(service = config.service, "outbox relay stopped");
    }

    /// One look at the outbox: batches until none is left. `Ok(None)`: the
    /// outbox is drained; `Ok(Some(batch))`: stopped early for that reason.
    async fn pass(&self, sink: &mut Sink) -> Result<Option<Batch>, Failure> {
        sink.ready().await.map_err(Failure::Broker)?;
        self.broker_ok();
        loop {
            if !self.has_unsent().await? {
                return Ok(None);
            }
            let batch = match self.inner.db.pool() {
                Pool::Postgres(pool) => self.batch_postgres(pool, sink).await?,
                Pool::Sqlite(pool) => self.batch_sqlite(pool, sink).await?,
                Pool::MySql(pool) => self.batch_mysql(pool, sink).await?,
            };
            match batch {
                Batch::Sent(n) if n >= self.inner.config.batch_size as usize => continue,
                Batch::Sent(_) => return Ok(None),
                other => return Ok(Some(other)),
            }
        }
    }

    /// Whether any row waits, without a transaction or a lock.
    async fn has_unsent(&self) -> Result<bool, sqlx::Error> {
        let sql = "SELECT seq FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT 1";
        let first: Option<i64> = crate::with_db!(&self.inner.db, pool => sqlx::query_scalar(sql).fetch_optional(pool).await?);
        Ok(first.is_some())
    }

    async fn batch_postgres(&self, pool: &PgPool, sink: &mut Sink) -> Result<Batch, Failure> {
        let mut tx = pool.begin().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, $2)")
            .bind(LOCK_CLASS)
            .bind(LOCK_ID)
            .fetch_one(&mut *tx)
            .await?;
        if !locked {
            return Ok(Batch::Busy);
        }
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED"
        ))
        .bind(i64::from(self.inner.config.batch_size))
        .fetch_all(&mut *tx)
        .await?;
        let events: Vec<OutboxEvent> = rows.into_iter().map(OutboxEvent::from).collect();
        if events.is_empty() {
            tx.commit().await?;
            return Ok(Batch::Sent(0));
        }
        self.publish(sink, &events).await?;
        if self.inner.config.faults.crash_after_publish {
            return Ok(Batch::Crashed);
        }
        // By exact seq: a row with a seq inside this batch's range may commit
        // later (sequences are handed out before commit) and must stay unsent.
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        sqlx::query("UPDATE outbox SET sent_at = $1 WHERE seq = ANY($2)")
            .bind(crate::db::now())
            .bind(&seqs)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Batch::Sent(events.len()))
    }

    async fn batch_sqlite(&self, pool: &SqlitePool, sink: &mut Sink) -> Result<Batch, Failure> {
        // The write lock from the start: no other writer (relay or checkout)
        // commits until this batch is marked, so the batch is exactly the
        // unsent rows up to its last seq.
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT $1"
        ))
        .bind(i64::from(self.inner.config.batch_size))
        .fetch_all(&mut *tx)
        .await?;
        let events: Vec<OutboxEvent> = rows.into_iter().map(OutboxEvent::from).collect();
        let Some(last) = events.last().map(|e| e.seq) else {
            tx.commit().await?;
            return Ok(Batch::Sent(0));
        };
        self.publish(sink, &events).await?;
        if self.inner.config.faults.crash_after_publish {
            return Ok(Batch::Crashed);
        }
        sqlx::query("UPDATE outbox SET sent_at = $1 WHERE sent_at IS NULL AND seq <= $2")
            .bind(crate::db::now())
            .bind(last)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Batch::Sent(events.len()))
    }

    async fn batch_mysql(&self, pool: &MySqlPool, sink: &mut Sink) -> Result<Batch, Failure> {
        let mut tx = pool.begin().await?;
        // One drainer at a time: the relay's lock row, held to the commit
        // (a replica that finds it taken backs off, as on PostgreSQL).
        let locked: Option<i32> =
            sqlx::query_scalar("SELECT id FROM outbox_relay WHERE id = 1 FOR UPDATE SKIP LOCKED")
                .fetch_optional(&mut *tx)
                .await?;
        if locked.is_none() {
            return Ok(Batch::Busy);
        }
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT ?"
        ))
        .bind(i64::from(self.inner.config.batch_size))
        .fetch_all(&mut *tx)
        .await?;
        let events: Vec<OutboxEvent> = rows.into_iter().map(OutboxEvent::from).collect();
        if events.is_empty() {
            tx.commit().await?;
            return Ok(Batch::Sent(0));
        }
        self.publish(sink, &events).await?;
        if self.inner.config.faults.crash_after_publish {
            return Ok(Batch::Crashed);
        }
        // By exact seq, as on PostgreSQL: AUTO_INCREMENT values are handed
        // out before commit too.
        let seqs = events
            .iter()
            .map(|e| e.seq.to_string())
            .collect::<Vec<_>>()
            .join(",");
        sqlx::query(&format!(
            "UPDATE outbox SET sent_at = ? WHERE seq IN ({seqs})"
        ))
        .bind(crate::db::now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Batch::Sent(events.len()))
    }

    async fn publish(&self, sink: &mut Sink, events: &[OutboxEvent]) -> Result<(), Failure> {
        sink.publish(events).await.map_err(Failure::Broker)?;
        let service = self.inner.config.service;
        metrics::counter!("outbox_published_total", "service" => service)
            .increment(events.len() as u64);
        let now = Utc::now();
        for event in events {
            let delay = (now - event.created_at).to_std().unwrap_or_default();
            metrics::histogram!("outbox_publish_delay_seconds", "service" => service)
                .record(delay.as_secs_f64());
        }
        Ok(())
    }

    fn broker_ok(&self) {
        if self.inner.config.amqp_url.is_some() {
            let mut error = self
                .inner
                .broker_error
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if error.take().is_some() {
                tracing::info!(service = self.inner.config.service, "broker reachable");
            }
        }
    }

    fn record_failure(&self, failure: Failure) {
        let service = self.inner.config.service;
        match failure {
            Failure::Broker(e) => {
                metrics::counter!("outbox_publish_failures_total", "service" => service)
                    .increment(1);
                let detail = format!("{e:#}");
                let mut error = self
                    .inner
                    .broker_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                if error.as_deref() != Some(detail.as_str()) {
                    tracing::warn!(service, error = %detail, "cannot publish events; they wait in the outbox");
                }
                *error = Some(detail);
            }
            Failure::Database(e) => {
                metrics::counter!("outbox_relay_database_errors_total", "service" => service)
                    .increment(1);
                tracing::warn!(service, error = %e, "outbox relay cannot read the outbox");
            }
        }
    }

    /// Sets `outbox_backlog` and `outbox_oldest_unsent_seconds`.
    async fn measure_backlog(&self) {
        let service = self.inner.config.service;
        let measured = async {
            let count_sql = "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL";
            let oldest_sql =
                "SELECT created_at FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT 1";
            crate::with_db!(&self.inner.db, pool => {
                let count: i64 = sqlx::query_scalar(count_sql).fetch_one(pool).await?;
                let oldest: Option<DateTime<Utc>> =
                    sqlx::query_scalar(oldest_sql).fetch_optional(pool).await?;
                Ok::<_, sqlx::Error>((count, oldest))
            })
        };
        match measured.await {
            Ok((count, oldest)) => {
                metrics::gauge!("outbox_backlog", "service" => service).set(count as f64);
                let age = oldest
                    .and_then(|t| (Utc::now() - t).to_std().ok())
                    .unwrap_or_default();
                metrics::gauge!("outbox_oldest_unsent_seconds", "service" => service)
                    .set(age.as_secs_f64());
            }
            Err(e) => tracing::debug!(error = %e, "cannot measure the outbox backlog"),
        }
    }

    /// Deletes sent rows older than the retention, a chunk at a time.
    async fn prune(&self) {
        let cutoff = Utc::now()
            - chrono::Duration::from_std(self.inner.config.retention)
                .unwrap_or(chrono::Duration::MAX);
        // MySQL takes no LIMIT in a subquery of IN, but its DELETE takes one.
        let sql = if self.inner.db.is_mysql() {
            format!(
                "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1
                 ORDER BY seq LIMIT {PRUNE_CHUNK}"
            )
        } else {
            format!(
                "DELETE FROM outbox WHERE seq IN (
                     SELECT seq FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1
                     ORDER BY seq LIMIT {PRUNE_CHUNK})"
            )
        };
        let mut total = 0;
        loop {
            let deleted = crate::with_db!(&self.inner.db, pool => {
                sqlx::query(&crate::db::dialect::placeholders(pool, &sql)).bind(cutoff).execute(pool).await.map(|r| r.rows_affected())
            });
            match deleted {
                Ok(n) => {
                    total += n;
                    if n < PRUNE_CHUNK {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot prune the outbox");
                    break;
                }
            }
        }
        if total > 0 {
            tracing::info!(
                service = self.inner.config.service,
                deleted = total,
                "pruned sent outbox rows"
            );
        }
    }
}

/// Wraps `router` so that every successful write request (not `GET`, `HEAD`
/// or `OPTIONS`) wakes the relay: by then its transaction has committed, so
/// its events go out without waiting for the next poll.
pub fn wake_after_writes(router: Router, relay: &Relay) -> Router {
    let relay = relay.clone();
    router.layer(axum::middleware::from_fn(
        move |request: Request, next: Next| {
            let relay = relay.clone();
            async move {
                let writes = !matches!(
                    *request.method(),
                    Method::GET | Method::HEAD | Method::OPTIONS
                );
                let response = next.run(request).await;
                if writes && response.status().is_success() {
                    relay.wake();
                }
                response
            }
        },
    ))
}
