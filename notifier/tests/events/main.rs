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

mod dead_letters;
mod failures;
mod helpers;
mod measure;
mod notifier;
mod publishing;
