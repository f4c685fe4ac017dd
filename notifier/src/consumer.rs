//! Consuming events from RabbitMQ.
//!
//! Topology (declared at every connect, idempotently): the services' durable
//! topic exchange; the notifier's durable *quorum* queue bound to `order.*`
//! and `user.registered`, with `x-delivery-limit` and a dead-letter exchange
//! `<queue>.dlx` whose durable queue `<queue>.dead` keeps what could not be
//! handled, for a person to look at (or shovel back).
//!
//! Each delivery is handled in order, then settled by hand:
//! - handled, or already handled before (its id is in `processed_events`):
//!   ack;
//! - malformed (not a CloudEvent, or without the data its type needs):
//!   rejected without requeue, so it is dead-lettered at once — no retry can
//!   fix it;
//! - the store failed: nack with requeue after a short backoff that grows
//!   with the message's `x-delivery-count`; the quorum queue counts the
//!   deliveries and dead-letters the message past the limit. While the
//!   database cannot be reached at all, nothing is settled and nothing is
//!   consumed (the message keeps its tries for when it is back).
//!
//! Connection loss: reconnect with capped exponential backoff; unacked
//! messages are redelivered by the broker and deduplicated here.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};
use shopeezy_common::db::Db;
use shopeezy_common::events::amqp;
use shopeezy_common::shutdown::Shutdown;

use crate::config::Config;
use crate::notifications::{self, CloudEvent, Malformed};
use crate::store::{self, Recorded};

/// The routing keys the notifier's queue is bound to.
pub const BINDINGS: [&str; 2] = ["order.*", "user.registered"];

/// Counts of what the consumer did since it started (also exported as
/// `notifier_messages_total{outcome}`).
#[derive(Debug, Default)]
pub struct Stats {
    /// Events handled for the first time.
    pub handled: AtomicU64,
    /// Deliveries of an event already handled (acked, nothing written).
    pub duplicates: AtomicU64,
    /// Deliveries nacked for a retry after a store failure.
    pub retried: AtomicU64,
    /// Malformed messages rejected to the dead-letter queue.
    pub rejected: AtomicU64,
}

/// The consumer's view of the broker, for `/readyz`.
#[derive(Debug, Clone)]
pub struct BrokerState(Arc<Mutex<Option<String>>>);

impl BrokerState {
    fn new() -> Self {
        Self(Arc::new(Mutex::new(Some("not connected yet".into()))))
    }

    fn set(&self, error: Option<String>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    /// `Ok` while consuming, else why not.
    pub fn get(&self) -> Result<(), String> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .map_or(Ok(()), Err)
    }
}

/// The event consumer of one notifier replica.
#[derive(Debug, Clone)]
pub struct Consumer {
    db: Db,
    config: Config,
    /// What it did.
    pub stats: Arc<Stats>,
    /// Whether it is connected.
    pub broker: BrokerState,
}

/// How a delivery ends.
enum Settle {
    Ack,
    Reject,
    Requeue,
}

impl Consumer {
    /// A consumer writing to `db`, configured by `config`.
    pub fn new(db: Db, config: Config) -> Self {
        Self {
            db,
            config,
            stats: Arc::default(),
            broker: BrokerState::new(),
        }
    }

    /// Consumes until `shutdown` flips, reconnecting after any failure with
    /// capped exponential backoff.
    pub async fn run(self, shutdown: Shutdown) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            match self.session(&shutdown).await {
                Ok(()) => break,
                Err(e) => {
                    let detail = format!("{e:#}");
                    tracing::warn!(error = %detail, "notifier lost the broker; reconnecting");
                    self.broker.set(Some(detail));
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                backoff = Duration::from_millis(100);
            }
            tokio::select! {
                () = shutdown.wait() => break,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
        tracing::info!("notifier consumer stopped");
    }

    /// One connection: declare, consume, handle until stopped or broken.
    async fn session(&self, shutdown: &Shutdown) -> anyhow::Result<()> {
        let connection = amqp::connect(&self.config.amqp_url, "shopeezy-notifier").await?;
        let result = async {
            let channel = connection.create_channel().await?;
            declare(&channel, &self.config).await?;
            channel
                .basic_qos(self.config.prefetch, BasicQosOptions::default())
                .await?;
            let mut deliveries = channel
                .basic_consume(
                    &self.config.queue,
                    "",
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            self.broker.set(None);
            tracing::info!(queue = %self.config.queue, "notifier consuming");
            loop {
                tokio::select! {
                    () = shutdown.wait() => return Ok(()),
                    next = deliveries.next() => match next {
                        Some(Ok(delivery)) => self.deliver(delivery, shutdown).await?,
                        Some(Err(e)) => return Err(e.into()),
                        None => anyhow::bail!("the broker cancelled the consumer"),
                    },
                }
            }
        }
        .await;
        amqp::close(&connection).await;
        result
    }

    /// Handles one delivery and settles it.
    async fn deliver(&self, delivery: Delivery, shutdown: &Shutdown) -> anyhow::Result<()> {
        let started = Instant::now();
        let tries = delivery_count(&delivery);
        let settle = match self.handle(&delivery.data).await {
            Ok(Recorded::New(n)) => {
                self.count("handled", &self.stats.handled);
                tracing::debug!(notifications = n, "event handled");
                Settle::Ack
            }
            Ok(Recorded::Duplicate) => {
                self.count("duplicate", &self.stats.duplicates);
                tracing::info!(message_id = ?delivery.properties.message_id(), "duplicate delivery; already handled");
                Settle::Ack
            }
            Err(Failure::Malformed(e)) => {
                self.count("rejected", &self.stats.rejected);
                tracing::warn!(error = %e, message_id = ?delivery.properties.message_id(), "dead-lettering a malformed message");
                Settle::Reject
            }
            Err(Failure::Store(e)) => {
                tracing::warn!(error = %e, tries, "cannot store an event's notifications; it will be retried");
                if self.wait_for_database(shutdown).await {
                    // Back off a little more with every delivery of the same message.
                    let wait = Duration::from_millis(50 << tries.min(6));
                    tokio::time::sleep(wait).await;
                }
                self.count("retried", &self.stats.retried);
                Settle::Requeue
            }
        };
        metrics::histogram!("notifier_handle_seconds").record(started.elapsed().as_secs_f64());
        match settle {
            Settle::Ack => delivery.ack(BasicAckOptions::default()).await?,
            Settle::Reject => {
                delivery
                    .reject(BasicRejectOptions { requeue: false })
                    .await?
            }
            Settle::Requeue => {
                delivery
                    .nack(BasicNackOptions {
                        requeue: true,
                        ..BasicNackOptions::default()
                    })
                    .await?
            }
        }
        Ok(())
    }

    async fn handle(&self, body: &[u8]) -> Result<Recorded, Failure> {
        let event = CloudEvent::parse(body).map_err(Failure::Malformed)?;
        let drafts = notifications::drafts(&event).map_err(Failure::Malformed)?;
        store::record(&self.db, &event, &drafts)
            .await
            .map_err(Failure::Store)
    }

    /// Waits while the database cannot be reached at all, so an outage does
    /// not use up messages' tries; `false` when stopped meanwhile.
    async fn wait_for_database(&self, shutdown: &Shutdown) -> bool {
        let mut wait = Duration::from_millis(100);
        loop {
            if self.db.ping().await.is_ok() {
                return true;
            }
            tokio::select! {
                () = shutdown.wait() => return false,
                () = tokio::time::sleep(wait) => {}
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    fn count(&self, outcome: &'static str, counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("notifier_messages_total", "outcome" => outcome).increment(1);
    }
}

enum Failure {
    Malformed(Malformed),
    Store(sqlx::Error),
}

/// How often the broker delivered this message before (quorum queues count
/// returns in `x-delivery-count`).
fn delivery_count(delivery: &Delivery) -> u32 {
    let value = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-delivery-count").cloned());
    match value {
        Some(AMQPValue::LongLongInt(n)) => u32::try_from(n).unwrap_or(u32::MAX),
        Some(AMQPValue::LongInt(n)) => u32::try_from(n).unwrap_or(u32::MAX),
        Some(AMQPValue::LongUInt(n)) => n,
        Some(AMQPValue::ShortInt(n)) => u32::try_from(n).unwrap_or(u32::MAX),
        _ => 0,
    }
}

/// Declares the exchange, the dead-letter exchange and queue, and the
/// notifier's quorum queue with its bindings.
pub async fn declare(channel: &Channel, config: &Config) -> lapin::Result<()> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    amqp::declare_events_exchange(channel, &config.amqp_exchange).await?;

    let dlx = config.dead_letter_exchange();
    let dead = config.dead_letter_queue();
    channel
        .exchange_declare(
            &dlx,
            ExchangeKind::Fanout,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(&dead, durable, FieldTable::default())
        .await?;
    channel
        .queue_bind(
            &dead,
            &dlx,
            "",
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;

    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    arguments.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongInt(i32::try_from(config.delivery_limit).unwrap_or(i32::MAX)),
    );
    arguments.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dlx.as_str().into()),
    );
    channel
        .queue_declare(&config.queue, durable, arguments)
        .await?;
    for key in BINDINGS {
        channel
            .queue_bind(
                &config.queue,
                &config.amqp_exchange,
                key,
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok(())
}
