//! Where the relay sends events: RabbitMQ with publisher confirms, or (the
//! embedded default) in-process subscribers and the log. The relay treats
//! both alike: a batch is "published" once the sink accepted all of it.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::broadcast;

use super::amqp;
use super::relay::OutboxEvent;

/// A destination for outbox events.
pub(crate) enum Sink {
    /// In-process subscribers (a broadcast channel) and the log.
    InProcess(broadcast::Sender<OutboxEvent>),
    /// A RabbitMQ exchange.
    Amqp(AmqpSink),
}

impl Sink {
    /// Makes the sink able to take a batch: connects to the broker when
    /// there is no healthy connection.
    pub(crate) async fn ready(&mut self) -> anyhow::Result<()> {
        match self {
            Self::InProcess(_) => Ok(()),
            Self::Amqp(amqp) => amqp.channel().await.map(|_| ()),
        }
    }

    /// Sends `events` in order; `Ok` only when every one was accepted (for
    /// RabbitMQ: confirmed by the broker).
    pub(crate) async fn publish(&mut self, events: &[OutboxEvent]) -> anyhow::Result<()> {
        match self {
            Self::InProcess(subscribers) => {
                for event in events {
                    tracing::info!(
                        target: "shopeezy::events",
                        id = %event.id, routing_key = %event.routing_key, subject = %event.subject,
                        "event"
                    );
                    // No subscriber is not a failure: the log has it.
                    let _ = subscribers.send(event.clone());
                }
                Ok(())
            }
            Self::Amqp(amqp) => amqp.publish(events).await,
        }
    }

    /// Closes the broker connection, if any.
    pub(crate) async fn close(&mut self) {
        if let Self::Amqp(amqp) = self {
            amqp.disconnect().await;
        }
    }
}

/// Publishing to one exchange over one connection, re-opened after any failure.
pub(crate) struct AmqpSink {
    url: String,
    exchange: String,
    name: String,
    app_id: String,
    publish_timeout: Duration,
    link: Option<(Connection, Channel)>,
}

impl AmqpSink {
    /// A sink for `exchange` at `url`; it connects on first use.
    pub(crate) fn new(url: &str, exchange: &str, service: &str, publish_timeout: Duration) -> Self {
        Self {
            url: url.to_owned(),
            exchange: exchange.to_owned(),
            name: format!("shopeezy-{service} outbox relay"),
            app_id: format!("shopeezy-{service}"),
            publish_timeout,
            link: None,
        }
    }

    /// A channel in confirm mode on a live connection, with the exchange declared.
    async fn channel(&mut self) -> anyhow::Result<Channel> {
        if let Some((connection, channel)) = &self.link {
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
            self.disconnect().await;
        }
        let connection = amqp::connect(&self.url, &self.name).await?;
        let setup = async {
            let channel = connection.create_channel().await?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            amqp::declare_events_exchange(&channel, &self.exchange).await?;
            Ok::<_, lapin::Error>(channel)
        };
        match tokio::time::timeout(amqp::CONNECT_TIMEOUT, setup).await {
            Ok(Ok(channel)) => {
                tracing::info!(exchange = %self.exchange, "outbox relay connected to the broker");
                self.link = Some((connection, channel.clone()));
                Ok(channel)
            }
            Ok(Err(e)) => {
                amqp::close(&connection).await;
                Err(anyhow::anyhow!("cannot set up the events channel: {e}"))
            }
            Err(_) => {
                amqp::close(&connection).await;
                Err(anyhow::anyhow!("setting up the events channel timed out"))
            }
        }
    }

    /// Publishes every event, then waits for every confirm. On any failure
    /// the connection is dropped, so the next attempt starts clean.
    async fn publish(&mut self, events: &[OutboxEvent]) -> anyhow::Result<()> {
        let channel = self.channel().await?;
        let sent = tokio::time::timeout(
            self.publish_timeout,
            publish_confirmed(&channel, &self.exchange, &self.app_id, events),
        )
        .await;
        let result = match sent {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!(
                "no confirm within {:?}",
                self.publish_timeout
            )),
        };
        if result.is_err() {
            self.disconnect().await;
        }
        result
    }

    async fn disconnect(&mut self) {
        if let Some((connection, _)) = self.link.take() {
            amqp::close(&connection).await;
        }
    }
}

/// Publishes the batch back to back (the broker confirms asynchronously),
/// then checks that each was acknowledged.
async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    app_id: &str,
    events: &[OutboxEvent],
) -> anyhow::Result<()> {
    let mut confirms = Vec::with_capacity(events.len());
    for event in events {
        let payload = serde_json::to_vec(&event.document)?;
        let confirm = channel
            .basic_publish(
                exchange,
                &event.routing_key,
                BasicPublishOptions::default(),
                &payload,
                properties(event, app_id),
            )
            .await?;
        confirms.push((event.id, confirm));
    }
    for (id, confirm) in confirms {
        match confirm.await? {
            Confirmation::Ack(_) => {}
            Confirmation::Nack(_) => anyhow::bail!("the broker refused event {id} (nack)"),
            Confirmation::NotRequested => anyhow::bail!("the channel is not in confirm mode"),
        }
    }
    Ok(())
}

/// The AMQP properties of an event's message, sent by `app_id`.
pub fn properties(event: &OutboxEvent, app_id: &str) -> BasicProperties {
    BasicProperties::default()
        .with_content_type(amqp::CONTENT_TYPE.into())
        .with_delivery_mode(amqp::PERSISTENT)
        .with_message_id(event.id.to_string().into())
        .with_type(event.event_type.as_str().into())
        .with_timestamp(u64::try_from(event.created_at.timestamp()).unwrap_or_default())
        .with_app_id(app_id.into())
}
