//! Shopeezy's notifier: a real consumer of the services' events. It binds
//! its own durable quorum queue to `shopeezy.events` (`order.*`,
//! `user.registered`), acknowledges by hand, handles each event id once
//! however often it is delivered, dead-letters what keeps failing, and keeps
//! the notifications it would send (welcome; order placed, shipped,
//! cancelled) for their owner to read at `GET /v1/notifications`.

pub mod auth;
pub mod config;
pub mod consumer;
pub mod error;
pub mod http;
pub mod notifications;
pub mod startup;
pub mod store;

pub use config::Config;
pub use startup::Application;
