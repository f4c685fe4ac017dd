//! Operations endpoints: `/healthz`, `/readyz`, `/metrics`, `/openapi.json`
//! and the API reference at `/docs` (Swagger UI, its files compiled into the
//! binary: it loads nothing from anywhere but the service itself).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;
use utoipa::OpenApi as _;
use utoipa_swagger_ui::{Config, SwaggerUi};

/// One backend's state, as `/readyz` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// Whether the service is unready without it (a broker is not: events
    /// wait in the outbox).
    pub required: bool,
    /// Why it is unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Check {
    /// The check of a backend from the outcome of reaching it.
    pub fn from_result<E: std::fmt::Display>(required: bool, result: Result<(), E>) -> Self {
        match result {
            Ok(()) => Self {
                status: "ok",
                required,
                detail: None,
            },
            Err(e) => Self {
                status: "unavailable",
                required,
                detail: Some(e.to_string()),
            },
        }
    }
}

/// A boxed future of a readiness report.
pub type ChecksFuture = Pin<Box<dyn Future<Output = BTreeMap<&'static str, Check>> + Send>>;

/// What a service checks for `/readyz`.
pub type Readiness = Arc<dyn Fn() -> ChecksFuture + Send + Sync>;

/// How often histogram samples are folded into their summaries.
const METRICS_UPKEEP: std::time::Duration = std::time::Duration::from_secs(5);

/// The process-wide Prometheus recorder (one per process, shared by every app
/// that the tests start in it).
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only when another recorder is installed; then ours is unused.
            let _ = metrics::set_global_recorder(recorder);
            // A recorder built by hand keeps every histogram sample until it
            // is drained: without upkeep, each request's samples stayed in
            // memory until the next scrape (≈100 bytes per order when
            // nothing scraped /metrics). A thread, not a task: the handle
            // may be made before any runtime exists.
            let upkeep = handle.clone();
            let _ = std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(METRICS_UPKEEP);
                        upkeep.run_upkeep();
                    }
                });
            handle
        })
        .clone()
}

/// Where the API reference is served (`/docs` redirects to `/docs/`).
pub const DOCS_PATH: &str = "/docs";

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/openapi.json";

/// The operations routes of a service; `openapi` is its API's document, which
/// is [finished](crate::openapi::finish) here before it is served.
pub fn router(readiness: Readiness, openapi: utoipa::openapi::OpenApi) -> Router {
    let openapi = crate::openapi::finish(openapi);
    // Rendered once: the document does not change while the process runs.
    let spec_json = axum::body::Bytes::from(serde_json::to_vec(&openapi).unwrap_or_default());
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz).with_state(readiness))
        .route("/metrics", get(metrics).with_state(metrics_handle()))
        .route(
            OPENAPI_PATH,
            get(move || {
                let spec_json = spec_json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], spec_json) }
            }),
        )
        .merge(docs_ui())
}

/// Swagger UI at [`DOCS_PATH`], reading the document at [`OPENAPI_PATH`]
/// (served above, so the UI registers no document route of its own). The
/// validator badge is off: it would send the document to an outside server.
fn docs_ui() -> SwaggerUi {
    let config = Config::new([OPENAPI_PATH])
        .validator_url("none")
        .persist_authorization(true)
        .try_it_out_enabled(true);
    SwaggerUi::new(DOCS_PATH).config(config)
}

/// The operations endpoints' own OpenAPI description, merged into every
/// service's document by [`crate::openapi::finish`].
pub fn operations_doc() -> utoipa::openapi::OpenApi {
    OpsDoc::openapi()
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(healthz, readyz, metrics))]
struct OpsDoc;

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops",
    responses((status = 200, description = "alive", body = Object, example = json!({"status": "alive"}))))]
async fn healthz() -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({"status": "alive"}))
}

/// Readiness: whether every backend the service needs answers, with each
/// backend's state (a broker is not required: events wait in the outbox).
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses(
        (status = 200, description = "ready", body = Object,
            example = json!({"status": "ready", "checks": {"database": {"status": "ok", "required": true}}})),
        (status = 503, description = "unready: a required backend is unavailable; the same report (not a problem)", body = Object,
            example = json!({"status": "unready", "checks": {"database": {"status": "unavailable", "required": true, "detail": "connection refused"}}})),
    ))]
async fn readyz(
    axum::extract::State(readiness): axum::extract::State<Readiness>,
) -> impl IntoResponse {
    ready(readiness().await)
}

/// The service's metrics, in the Prometheus text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain; version=0.0.4", body = String)))]
async fn metrics(
    axum::extract::State(metrics): axum::extract::State<PrometheusHandle>,
) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

fn ready(checks: BTreeMap<&'static str, Check>) -> impl IntoResponse {
    let ready = checks.values().all(|c| !c.required || c.status == "ok");
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "unready" },
        "checks": checks,
    });
    (status, axum::Json(body))
}

/// Declares the `bearer` (JWT) security scheme that every service's
/// authenticated routes refer to: use as `#[openapi(modifiers(&BearerAuth))]`.
#[derive(Debug, Clone, Copy)]
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// A [`Readiness`] from a state and an async check of it: the check runs on
/// each `/readyz` with its own clone of the state.
pub fn readiness<S, F, Fut>(state: S, check: F) -> Readiness
where
    S: Clone + Send + Sync + 'static,
    F: Fn(S) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = BTreeMap<&'static str, Check>> + Send + 'static,
{
    Arc::new(move || Box::pin(check(state.clone())))
}

/// A service's API with the operations routes, in the shared middleware.
pub fn app(api: Router, readiness: Readiness, openapi: utoipa::openapi::OpenApi) -> Router {
    crate::http::layered(
        api.merge(router(readiness, openapi)),
        crate::http::DEFAULT_BODY_LIMIT,
    )
}
