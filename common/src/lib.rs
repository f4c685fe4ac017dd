//! What every Shopeezy service shares: the problem+json error shape and the
//! extractors that produce it, the HTTP middleware stack (request ids, tracing,
//! metrics, limits), the operations endpoints and the rules every OpenAPI document follows, database connection and
//! migration, pagination, graceful shutdown, and the outbox relay that sends
//! events to RabbitMQ (or to in-process subscribers).
//!
//! Kept in one crate so that the account service and the host answer errors,
//! log and expose metrics the same way.

pub mod config;
pub mod db;
pub mod events;
pub mod extract;
pub mod healthcheck;
pub mod http;
pub mod openapi;
pub mod ops;
pub mod origin;
pub mod outbox;
pub mod page;
pub mod problem;
pub mod shutdown;
pub mod telemetry;

pub use problem::Problem;
