//! Building and running the service: `Application::build` binds both
//! listeners (port 0 in tests) and `run_until_stopped` serves until a stop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shopeezy_common::db::{Db, Migrations};
use shopeezy_common::events::{self, Relay};
use shopeezy_common::ops::{self, Check, Readiness};
use shopeezy_common::shutdown::Shutdown;
use shopeezy_proto::auth::v1::auth_service_server::AuthServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::admins;
use crate::config::Config;
use crate::feed::Feed;
use crate::grpc::AuthGrpc;
use crate::http::cors::CorsOrigins;
use crate::kv::Kv;
use crate::passwords::Hasher;
use crate::revocation::Revocation;
use crate::throttle::{self, Throttle};
use crate::tokens::Keys;

/// The service's migrations, embedded (`migrations/account/`).
const MIGRATIONS: Migrations<'static> = Migrations {
    postgres: shopeezy_common::embed_migrations!(
        "account/postgres",
        ["0001_users", "0002_revocations", "0003_revocation_log"]
    ),
    sqlite: shopeezy_common::embed_migrations!(
        "account/sqlite",
        ["0001_users", "0002_revocations", "0003_revocation_log"]
    ),
    mysql: shopeezy_common::embed_migrations!("account/mysql", ["0001_schema"]),
};

/// How often expired revocations are deleted from the database.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// What every request handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The user database.
    pub db: Db,
    /// Token signing and checking.
    pub keys: Arc<Keys>,
    /// Revoked tokens.
    pub revocation: Revocation,
    /// Failed logins.
    pub throttle: Throttle,
    /// Password hashing.
    pub hasher: Hasher,
    /// The outbox relay, which sends the committed events.
    pub relay: Relay,
    /// This replica's tail of the revocation log, streamed by gRPC
    /// `WatchRevocations`.
    pub feed: Feed,
}

/// The service, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    http: TcpListener,
    grpc: TcpListener,
    state: AppState,
    shutdown: Shutdown,
    /// The origins whose pages may call the REST API.
    cors: CorsOrigins,
}

impl Application {
    /// Connects and migrates the database, makes the configured admin exist,
    /// loads the signing key and binds both listeners.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let migrations = MIGRATIONS;
        let db = Db::connect(
            &config.database_url,
            config.database_max_connections,
            migrations,
        )
        .await?;
        let hasher = Hasher::new(config.argon2_memory_kib, config.argon2_iterations)?;
        let keys = Arc::new(Keys::load(&config.token_settings())?);
        let kv = Kv::new(config.redis_url.as_deref())?;
        let revocation = Revocation::new(
            kv.clone(),
            db.clone(),
            &config.redis_key_prefix,
            config.access_token_ttl_secs,
        );
        let throttle = Throttle::new(
            kv,
            &config.redis_key_prefix,
            throttle::Limits {
                per_account_and_address: config.login_max_failures,
                per_address: config.login_max_failures_per_address,
                window_secs: config.login_window_secs,
            },
        );
        let relay = Relay::new(db.clone(), config.events.relay_config("account"));
        let shutdown = Shutdown::new();
        let feed = Feed::new(db.clone(), revocation.written(), shutdown.clone());
        let state = AppState {
            db,
            keys,
            revocation,
            throttle,
            hasher,
            relay,
            feed,
        };
        if let (Some(email), Some(password)) = (&config.admin_email, &config.admin_password) {
            admins::ensure_admin(&state.db, &state.hasher, email, password).await?;
        }
        let http = TcpListener::bind(config.http_addr).await?;
        let grpc = TcpListener::bind(config.grpc_addr).await?;
        tracing::info!(
            http = %http.local_addr()?, grpc = %grpc.local_addr()?,
            database = state.db.backend(), revocation = state.revocation.backend(),
            "account service ready"
        );
        Ok(Self {
            http,
            grpc,
            state,
            shutdown,
            cors: config.cors_origins,
        })
    }

    /// The bound REST address.
    pub fn http_addr(&self) -> SocketAddr {
        shopeezy_common::http::bound_addr(&self.http)
    }

    /// The bound gRPC address.
    pub fn grpc_addr(&self) -> SocketAddr {
        shopeezy_common::http::bound_addr(&self.grpc)
    }

    /// The switch that stops this application.
    pub fn shutdown_handle(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// The shared state (for tests that look behind the API).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves REST and gRPC until the shutdown switch flips, then lets the
    /// requests in flight finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            http,
            grpc,
            state,
            shutdown,
            cors,
        } = self;
        let (api, openapi) = crate::http::api(state.clone());
        let api = events::wake_after_writes(api, &state.relay);
        // Outermost, so a preflight (`OPTIONS`) is answered here with the
        // CORS headers before routing could answer it 405.
        let router =
            ops::app(api, readiness(&state), openapi).layer(crate::http::cors::layer(&cors));

        let (health, health_service) = tonic_health::server::health_reporter();
        health.set_serving::<AuthServiceServer<AuthGrpc>>().await;
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(shopeezy_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .build_v1()?;
        let grpc_server = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(AuthServiceServer::new(AuthGrpc::new(state.clone())))
            .serve_with_incoming_shutdown(TcpListenerStream::new(grpc), shutdown.wait());

        let relay = state.relay.spawn(shutdown.wait());
        let feed = state.feed.spawn();
        let pruner = tokio::spawn(prune_revocations(
            state.revocation.clone(),
            shutdown.clone(),
        ));
        let http_server = shopeezy_common::http::serve(http, router, shutdown.wait());
        let (http_result, grpc_result) = tokio::join!(http_server, grpc_server);
        shutdown.trigger();
        let _ = relay.await;
        let _ = feed.await;
        let _ = pruner.await;
        state.db.close().await;
        http_result?;
        grpc_result?;
        tracing::info!("account service stopped");
        Ok(())
    }
}

/// Deletes expired revocations now and every [`PRUNE_EVERY`] until stopped.
async fn prune_revocations(revocation: Revocation, shutdown: Shutdown) {
    let stopped = shutdown.wait();
    tokio::pin!(stopped);
    loop {
        match revocation.prune().await {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned expired revocations"),
            Err(e) => tracing::warn!(error = %e, "pruning expired revocations failed"),
        }
        tokio::select! {
            () = &mut stopped => return,
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

fn readiness(state: &AppState) -> Readiness {
    ops::readiness(state.clone(), |state| async move {
        let mut checks = BTreeMap::new();
        checks.insert("database", Check::from_result(true, state.db.ping().await));
        checks.insert(
            state.revocation.backend(),
            Check::from_result(true, state.revocation.ping().await),
        );
        if let Some(broker) = state.relay.broker_check() {
            checks.insert("broker", broker);
        }
        checks
    })
}

#[cfg(test)]
mod migration_tests {
    #[test]
    fn every_migration_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let differ = super::MIGRATIONS
            .unembedded(&root, "account")
            .expect("the folders");
        assert!(differ.is_empty(), "account: {differ:?}");
    }
}
