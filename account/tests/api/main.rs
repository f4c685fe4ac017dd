//! The account service's integration tests: the real application, started
//! per test on a fresh database, driven over real HTTP and real gRPC.
//!
//! Every scenario runs twice, once per backend: `sqlite` (the embedded
//! default: SQLite file, in-process revocation) and `postgres` (PostgreSQL and
//! Redis). Without `CI`, a `postgres` test whose server is unreachable is
//! skipped with a `SKIPPED` line; with `CI=true` it fails.
//!
//! Set `TEST_LOG=1` to see the service's logs.

#![allow(clippy::unwrap_used)]

// `every_backend!`: one `sqlite` and one `postgres` test per scenario.
#[macro_use]
extern crate shopeezy_testkit;

mod admin;
mod auth;
mod bad_input;
mod cors;
mod grpc;
mod helpers;
mod openapi;
mod ops;
mod outages;
mod revocation;
mod tokens;
mod users;
mod watch;
