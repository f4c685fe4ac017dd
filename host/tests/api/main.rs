//! The host service's integration tests: the real account service and the
//! real host, started per test on fresh databases, driven over real HTTP.
//!
//! Every scenario runs twice, once per backend: `sqlite` (the embedded
//! default: SQLite files, in-process revocation) and `postgres` (PostgreSQL
//! and Redis). Without `CI`, a `postgres` test whose servers are unreachable
//! is skipped with a `SKIPPED` line; with `CI=true` it fails.
//!
//! Set `TEST_LOG=1` to see the services' logs.

#![allow(clippy::unwrap_used)]

// `every_backend!`: one `sqlite` and one `postgres` test per scenario.
#[macro_use]
extern crate shopeezy_testkit;

mod bad_input;
mod cart;
mod catalog;
mod checkout;
mod console;
mod faults;
mod group_commit;
mod helpers;
mod idempotency;
mod openapi;
mod ops;
mod orders;
mod plugin_helpers;
mod plugins_compile;
mod plugins_escape;
mod plugins_examples;
mod plugins_races;
mod plugins_runner;
mod plugins_sandbox;
mod plugins_scope;
mod plugins_stats;
mod race;
mod security;
