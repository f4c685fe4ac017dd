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

/// Generates, for each `async fn scenario(backend: Backend)`, a module of the
/// same name holding one test per backend (`sqlite`, `postgres`).
macro_rules! both_backends {
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                super::$scenario($crate::helpers::Backend::Embedded).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                super::$scenario($crate::helpers::Backend::Production).await;
            }
        }
    )+};
}

mod bad_input;
mod cart;
mod catalog;
mod checkout;
mod faults;
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
mod race;
mod security;
