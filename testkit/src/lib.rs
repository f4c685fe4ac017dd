//! What the services' test suites share, in one place.
//!
//! - [`Backend`] and [`every_backend!`]: every scenario runs on the embedded
//!   backend (SQLite files in a [`tempfile::TempDir`], in-process revocation)
//!   and on the production one (a fresh PostgreSQL database per service,
//!   Redis under a key prefix of the test's own); [`Storage`] hands them out.
//! - [`servers`]: the real PostgreSQL, Redis and RabbitMQ of the machine.
//!   Without `CI`, a test whose server is unreachable is skipped with a
//!   `SKIPPED` line; with `CI=true` it fails. [`TcpProxy`] cuts a link.
//!   [`PgBouncer`] runs one in transaction pooling for a test;
//!   `every_backend!(pgbouncer: …)` runs scenarios through it too.
//! - [`account`] and [`host`]: the services' test configurations (built from
//!   arguments only: a developer's `SHOPEEZY_*` variables are never read)
//!   and the services started on them; [`Stack`] is the account service and
//!   the host together, as the host's and the notifier's tests use them.
//! - [`Accounts`]: registering users, signing in, granting roles.
//! - [`Reply`] and [`assert_problem`]: answers read whole, and the one
//!   strict RFC 9457 check every suite uses.
//! - [`eventually`]: polling with a deadline.
//!
//! Set `TEST_LOG=1` to see the services' logs.
//!
//! Only ever a dev-dependency of the services.

pub mod account;
pub mod host;
pub mod http;
pub mod openapi;
pub mod servers;
mod storage;

use std::sync::Once;
use std::time::Duration;

pub use account::{ADMIN_EMAIL, ADMIN_PASSWORD, Accounts, PASSWORD, User};
pub use host::{Stack, StackConfig};
pub use http::{Reply, assert_problem, check_problem, id_of, send};
pub use servers::{PgBouncer, TcpProxy, TestDatabase, ci};
pub use storage::Storage;

/// Which backends the services of a test run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// SQLite files in a fresh temporary folder, revocation and throttling
    /// in-process, no Redis.
    #[default]
    Embedded,
    /// A fresh PostgreSQL database per service, Redis under a key prefix of
    /// the test's own.
    Production,
    /// A fresh MySQL/MariaDB database per service, Redis under a key prefix
    /// of the test's own.
    MySql,
}

impl Backend {
    /// Whether the services run on servers (a database server and Redis),
    /// as in production, rather than embedded.
    pub fn has_servers(self) -> bool {
        self != Self::Embedded
    }
}

/// Generates, for each `async fn scenario(backend: Backend)`, a module of the
/// same name holding one test per backend: `sqlite` ([`Backend::Embedded`]),
/// `postgres` ([`Backend::Production`]) and `mysql` ([`Backend::MySql`]),
/// each on a multi-threaded runtime.
///
/// `every_backend!(pgbouncer: …)` adds a fourth test to each, `pgbouncer`:
/// PostgreSQL with its databases reached through a PgBouncer of the test's
/// own in transaction pooling mode ([`servers::through_pgbouncer`]; without
/// `pgbouncer` installed it is skipped, and fails under `CI=true`).
#[macro_export]
macro_rules! every_backend {
    (pgbouncer: $($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            $crate::every_backend!(@tests $scenario);

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn pgbouncer() {
                $crate::servers::through_pgbouncer(super::$scenario($crate::Backend::Production))
                    .await;
            }
        }
    )+};
    (@tests $scenario:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn sqlite() {
            super::$scenario($crate::Backend::Embedded).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn postgres() {
            super::$scenario($crate::Backend::Production).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn mysql() {
            super::$scenario($crate::Backend::MySql).await;
        }
    };
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            $crate::every_backend!(@tests $scenario);
        }
    )+};
}

/// Polls `probe` until it returns `true` or `within` passes; whether it did.
pub async fn eventually<F, Fut>(within: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if probe().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends the services' logs to standard error when `TEST_LOG` is set (once
/// per test binary).
pub fn init_logs() {
    static LOGS: Once = Once::new();
    LOGS.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            shopeezy_common::telemetry::init("info,sqlx=warn");
        }
    });
}
