//! Where one test's services keep their data.

use std::path::Path;
use std::sync::Mutex;

use tempfile::TempDir;

use crate::Backend;
use crate::servers::{self, PgBouncer, TestDatabase};

/// One test's data: a fresh temporary folder (the SQLite files of the
/// embedded backend, the services' data folders) and, on the production
/// backends, the PostgreSQL or MySQL databases made for it (reached through a
/// PgBouncer of its own in a test run
/// [`through_pgbouncer`](servers::through_pgbouncer)) and the Redis it may
/// use. Everything is removed when this is dropped (PgBouncer first, then
/// the databases, then the folder).
#[derive(Debug)]
pub struct Storage {
    /// The backend the data lives on.
    pub backend: Backend,
    /// The PgBouncer the databases are reached through, in a test run
    /// [`through_pgbouncer`](servers::through_pgbouncer) (stopped first).
    pub pgbouncer: Option<PgBouncer>,
    databases: Mutex<Vec<TestDatabase>>,
    redis_url: Option<String>,
    dir: TempDir,
}

impl Storage {
    /// Storage on `backend`; `None` when the backend's servers cannot be
    /// reached (the test is then skipped, or fails under CI).
    pub async fn new(backend: Backend) -> Option<Self> {
        let dir = tempfile::Builder::new()
            .prefix("shopeezy-test-")
            .tempdir()
            .expect("a temporary folder");
        let redis_url = match backend {
            Backend::Embedded => None,
            Backend::Production | Backend::MySql => Some(servers::reachable_redis().await?),
        };
        let pgbouncer = match backend {
            Backend::Production if servers::pgbouncer_requested() => {
                Some(PgBouncer::start().await?)
            }
            _ => None,
        };
        Some(Self {
            backend,
            pgbouncer,
            databases: Mutex::new(Vec::new()),
            redis_url,
            dir,
        })
    }

    /// The temporary folder, removed with this.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new, empty database named after `name` (e.g. `host`): a SQLite file
    /// in the folder, or a fresh PostgreSQL or MySQL database; its URL.
    /// `None` when the server cannot be reached (skipped, or failing under
    /// CI).
    pub async fn database_url(&self, name: &str) -> Option<String> {
        match self.backend {
            Backend::Embedded => Some(format!("sqlite://{}/{name}.db", self.dir().display())),
            Backend::MySql => {
                let database = servers::fresh_mysql().await?;
                let url = database.url.clone();
                self.databases
                    .lock()
                    .expect("no test panicked holding the lock")
                    .push(database);
                Some(url)
            }
            Backend::Production => {
                let database = servers::fresh_postgres().await?;
                let url = match &self.pgbouncer {
                    Some(pgbouncer) => pgbouncer.url_for(&database.url),
                    None => database.url.clone(),
                };
                self.databases
                    .lock()
                    .expect("no test panicked holding the lock")
                    .push(database);
                Some(url)
            }
        }
    }

    /// The Redis URL on the production backend (checked reachable).
    pub fn redis_url(&self) -> Option<&str> {
        self.redis_url.as_deref()
    }
}
