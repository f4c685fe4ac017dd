//! Events end to end, on the real RabbitMQ: the services' outbox relays, the
//! notifier, and what happens when the broker or a relay fails.
//!
//! Scenarios that take a backend run twice: `sqlite` (the embedded default)
//! and `postgres` (PostgreSQL and Redis). Without `CI`, a test whose servers
//! are unreachable is skipped with a `SKIPPED` line; with `CI=true` it fails.
//! Every test publishes to an exchange of its own, so tests run in parallel.
//!
//! Set `TEST_LOG=1` to see the services' logs.

#![allow(clippy::unwrap_used)]

// `every_backend!`: one `sqlite` and one `postgres` test per scenario.
#[macro_use]
extern crate shopeezy_testkit;

mod dead_letters;
mod failures;
mod helpers;
mod measure;
mod notifier;
mod publishing;
