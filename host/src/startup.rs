//! Building and running the service: `Application::build` binds the listener
//! (port 0 in tests) and `run_until_stopped` serves until a stop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use shopeezy_common::db::Db;
use shopeezy_common::events::{self, Relay};
use shopeezy_common::ops::{self, Check, Readiness};
use shopeezy_common::shutdown::Shutdown;
use tokio::net::TcpListener;

use crate::auth::AuthClient;
use crate::cart::Carts;
use crate::checkout::Checkout;
use crate::config::Config;
use crate::error::Error;
use crate::plugins::registry::Registry;
use crate::plugins::runtime::Runtime;
use crate::pricing::Pipeline;
use crate::state::AppState;

/// The service, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    http: TcpListener,
    state: AppState,
    shutdown: Shutdown,
    /// The console and storefront pages, which need no state.
    console: axum::Router,
}

impl Application {
    /// Connects and migrates the database and binds the listener.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let db = Db::connect(
            &config.database_url,
            config.database_max_connections,
            crate::store::migrations(),
        )
        .await?;
        let auth = AuthClient::new(
            &config.auth_grpc_url,
            config.auth_timeout(),
            config.auth_stale(),
        )?;
        let runtime = Runtime::new(config.plugin_limits())?;
        let registry = Registry::load(db.clone(), runtime).await?;
        let pipeline = Pipeline::new(registry);
        let carts = Carts::new(db.clone(), pipeline.clone());
        let checkout = Checkout::new(
            db.clone(),
            pipeline.clone(),
            config.checkout_max_attempts,
            config.checkout_max_batch,
        );
        let relay = Relay::new(db.clone(), config.events.relay_config("host"));
        let state = AppState {
            db,
            auth,
            pipeline,
            carts,
            checkout,
            relay,
        };
        let http = TcpListener::bind(config.http_addr).await?;
        tracing::info!(http = %http.local_addr()?, database = state.db.backend(), "host ready");
        let shutdown = Shutdown::new();
        let poll = Duration::from_millis(config.plugin_poll_ms.max(10));
        state.pipeline.registry().watch(poll, shutdown.wait());
        state.auth.spawn(shutdown.wait());
        Ok(Self {
            http,
            state,
            shutdown,
            console: crate::http::console::router(&config.account_url),
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

    /// Serves until the shutdown switch flips, then lets the requests in
    /// flight finish.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            http,
            state,
            shutdown,
            console,
        } = self;
        let (api, openapi) = crate::http::api(state.clone());
        let api = api.layer(axum::middleware::from_fn_with_state(
            state.pipeline.registry().clone(),
            wait_for_plugins,
        ));
        let api = events::wake_after_writes(api, &state.relay);
        let router = ops::app(api.merge(console), readiness(&state), openapi);
        let relay = state.relay.spawn(shutdown.wait());
        let served = shopeezy_common::http::serve(http, router, shutdown.wait()).await;
        shutdown.trigger();
        let _ = relay.await;
        served?;
        state.db.close().await;
        tracing::info!("host stopped");
        Ok(())
    }
}

/// How long a request that prices a cart waits, after a start, for the
/// installed plugins to be compiled before it is answered 503
/// `plugins_loading`. Compiles are bounded (`plugins::compile`), so only a
/// host with many large plugins installed gets near it.
const PLUGINS_LOAD_WAIT: Duration = Duration::from_secs(10);

/// Holds back the requests that run the pricing pipeline (cart and
/// checkout) until the plugins installed at start-up are compiled, up to
/// [`PLUGINS_LOAD_WAIT`]: pricing without them would show and charge other
/// prices than the merchants set. Every other request (the catalog, orders,
/// plugin management, `/readyz`) is served at once. The host listens while
/// it compiles; `/readyz` says `unready` until it is done, so a load
/// balancer sends shoppers elsewhere meanwhile.
async fn wait_for_plugins(
    State(registry): State<Arc<Registry>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    let prices = path.starts_with("/v1/cart") || path.starts_with("/v1/checkout");
    if prices && !registry.loaded() && !registry.wait_loaded(PLUGINS_LOAD_WAIT).await {
        return Error::PluginsLoading.into_response();
    }
    next.run(request).await
}

/// The `/readyz` check of the plugins: unready while the installed ones are
/// compiled after a start; then the count of compiled versions in memory.
fn plugins_check(registry: &Registry) -> Check {
    let versions = registry.compiled_versions();
    if registry.loaded() {
        Check {
            status: "ok",
            required: true,
            detail: Some(format!("{versions} compiled versions in memory")),
        }
    } else {
        Check {
            status: "unavailable",
            required: true,
            detail: Some(format!(
                "compiling the installed plugins ({versions} compiled versions in memory)"
            )),
        }
    }
}

/// The `/readyz` check of token verification: unavailable while tokens are
/// answered 503 (no revocation view yet, or one older than it is trusted);
/// ok while the view is live, or stale but still trusted (the detail says
/// which).
fn auth_check(auth: &AuthClient) -> Check {
    match auth.status() {
        Ok(detail) => Check {
            status: "ok",
            required: true,
            detail: Some(detail),
        },
        Err(detail) => Check {
            status: "unavailable",
            required: true,
            detail: Some(detail),
        },
    }
}

fn readiness(state: &AppState) -> Readiness {
    ops::readiness(state.clone(), |state| async move {
        let mut checks = BTreeMap::new();
        checks.insert("database", Check::from_result(true, state.db.ping().await));
        checks.insert("auth", auth_check(&state.auth));
        checks.insert("plugins", plugins_check(state.pipeline.registry()));
        if let Some(broker) = state.relay.broker_check() {
            checks.insert("broker", broker);
        }
        checks
    })
}
