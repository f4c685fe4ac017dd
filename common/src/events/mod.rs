//! Events leave a service through its transactional outbox
//! ([`crate::outbox`]): the [`relay`] drains the outbox table, in commit
//! order, to a [`sink`] — RabbitMQ's `shopeezy.events` topic exchange with
//! publisher confirms, or (the embedded default) in-process subscribers and
//! the log.

pub mod amqp;
pub mod relay;
pub mod sink;

pub use relay::{Faults, OutboxEvent, Relay, RelayConfig, RelaySettings, wake_after_writes};
