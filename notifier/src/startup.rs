//! Building and running the service: `Application::build` connects the
//! database and binds the listener (port 0 in tests); `run_until_stopped`
//! consumes events and serves the API until a stop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use shopeezy_common::db::{Db, Migrations};
use shopeezy_common::ops::{self, Check, Readiness};
use shopeezy_common::shutdown::Shutdown;
use tokio::net::TcpListener;

use crate::auth::AuthClient;
use crate::config::Config;
use crate::consumer::{BrokerState, Consumer, Stats};

/// The service's migrations, embedded (`migrations/notifier/`).
const MIGRATIONS: Migrations<'static> = Migrations {
    postgres: shopeezy_common::embed_migrations!("notifier/postgres", ["0001_notifications"]),
    sqlite: shopeezy_common::embed_migrations!("notifier/sqlite", ["0001_notifications"]),
    mysql: shopeezy_common::embed_migrations!("notifier/mysql", ["0001_notifications"]),
};

/// What every request handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The notifications and the processed event ids.
    pub db: Db,
    /// The account service, which checks tokens.
    pub auth: AuthClient,
    /// What the consumer did.
    pub stats: Arc<Stats>,
    /// Whether the consumer is connected.
    pub broker: BrokerState,
}

/// The service, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    http: TcpListener,
    state: AppState,
    consumer: Consumer,
    shutdown: Shutdown,
}

impl Application {
    /// Connects and migrates the database and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let migrations = MIGRATIONS;
        let db = Db::connect(
            &config.database_url,
            config.database_max_connections,
            migrations,
        )
        .await?;
        let auth = AuthClient::new(&config.auth_grpc_url, config.auth_timeout())?;
        let http = TcpListener::bind(config.http_addr).await?;
        let consumer = Consumer::new(db.clone(), config.clone());
        let state = AppState {
            db,
            auth,
            stats: consumer.stats.clone(),
            broker: consumer.broker.clone(),
        };
        tracing::info!(
            http = %http.local_addr()?, database = state.db.backend(), queue = %config.queue,
            "notifier ready"
        );
        Ok(Self {
            http,
            state,
            consumer,
            shutdown: Shutdown::new(),
        })
    }

    /// The bound REST address.
    pub fn http_addr(&self) -> SocketAddr {
        shopeezy_common::http::bound_addr(&self.http)
    }

    /// The switch that stops this application.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The shared state (for tests that look behind the API).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Consumes events and serves the API until the shutdown switch flips;
    /// the message and the requests in flight are finished first.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            http,
            state,
            consumer,
            shutdown,
        } = self;
        let consuming = tokio::spawn(consumer.run(shutdown.clone()));
        let (api, openapi) = crate::http::api(state.clone());
        let router = ops::app(api, readiness(&state), openapi);
        let served = shopeezy_common::http::serve(http, router, shutdown.wait()).await;
        shutdown.trigger();
        let _ = consuming.await;
        state.db.close().await;
        served?;
        tracing::info!("notifier stopped");
        Ok(())
    }
}

fn readiness(state: &AppState) -> Readiness {
    ops::readiness(state.clone(), |state| async move {
        let mut checks = BTreeMap::new();
        checks.insert("database", Check::from_result(true, state.db.ping().await));
        checks.insert("auth", Check::from_result(true, state.auth.ping().await));
        // The API answers without the broker; events wait in the queue.
        checks.insert("broker", Check::from_result(false, state.broker.get()));
        checks
    })
}

#[cfg(test)]
mod migration_tests {
    #[test]
    fn every_migration_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let differ = super::MIGRATIONS
            .unembedded(&root, "notifier")
            .expect("the folders");
        assert!(differ.is_empty(), "notifier: {differ:?}");
    }
}
