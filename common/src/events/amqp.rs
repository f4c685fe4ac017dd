//! RabbitMQ plumbing shared by the relay (publisher) and the notifier
//! (consumer): connections on tokio, and the events exchange.

use std::time::Duration;

use lapin::options::ExchangeDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, ExchangeKind};

/// The exchange every service publishes its events to.
pub const DEFAULT_EXCHANGE: &str = "shopeezy.events";

/// The content type of every event message (structured-mode CloudEvents).
pub const CONTENT_TYPE: &str = "application/cloudevents+json";

/// AMQP `delivery_mode` for a message the broker writes to disk.
pub const PERSISTENT: u8 = 2;

/// How long opening a connection (TCP, handshake, login) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Opens a connection to `url` (`amqp://user:pass@host:port/vhost`) named
/// `name` in the broker's management views, driven by the current tokio
/// runtime.
pub async fn connect(url: &str, name: &str) -> anyhow::Result<Connection> {
    let properties = ConnectionProperties::default()
        .with_executor(tokio_executor_trait::Tokio::current())
        .with_reactor(tokio_reactor_trait::Tokio)
        .with_connection_name(name.into());
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(url, properties)).await {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(e)) => Err(anyhow::anyhow!(
            "cannot connect to {}: {e}",
            crate::db::redact(url)
        )),
        Err(_) => Err(anyhow::anyhow!(
            "connecting to {} timed out",
            crate::db::redact(url)
        )),
    }
}

/// Declares the durable topic exchange `name` (idempotent: every publisher
/// and consumer declares it the same way, so none depends on who starts first).
pub async fn declare_events_exchange(channel: &Channel, name: &str) -> lapin::Result<()> {
    channel
        .exchange_declare(
            name,
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
}

/// Closes a connection, waiting at most a second: a broken one may never
/// answer the close handshake.
pub async fn close(connection: &Connection) {
    let _ = tokio::time::timeout(Duration::from_secs(1), connection.close(200, "closing")).await;
}
