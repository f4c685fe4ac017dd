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

/// Generates, for each `async fn scenario(backend: Backend)`, a module of the
/// same name holding one `#[tokio::test]` per backend (`sqlite`, `postgres`).
macro_rules! both_backends {
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn sqlite() {
                super::$scenario($crate::helpers::Backend::Embedded).await;
            }

            #[tokio::test]
            async fn postgres() {
                super::$scenario($crate::helpers::Backend::Production).await;
            }
        }
    )+};
}

mod admin;
mod auth;
mod bad_input;
mod grpc;
mod helpers;
mod openapi;
mod ops;
mod outages;
mod revocation;
mod tokens;
mod users;
