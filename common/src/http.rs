//! The middleware every service's HTTP router is wrapped in: request ids,
//! tracing spans, Prometheus metrics, body limits, panics turned into 500
//! problems, and problem+json for unknown routes and methods.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use http_body::Body as _;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::Problem;

/// The header that carries a request's id, taken from the client or made here.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The default largest request body: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// Wraps a service's router in the shared middleware stack.
///
/// `body_limit` is the largest body any route accepts unless it sets its own
/// `DefaultBodyLimit`; larger bodies are answered 413 `body_too_large`.
pub fn layered(router: Router, body_limit: usize) -> Router {
    let trace = TraceLayer::new_for_http()
        .make_span_with(|request: &Request| {
            let request_id = request
                .headers()
                .get(REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-");
            tracing::info_span!(
                "http",
                method = %request.method(),
                path = %request.uri().path(),
                request_id = %request_id,
            )
        })
        .on_response(
            DefaultOnResponse::new()
                .level(Level::INFO)
                .latency_unit(tower_http::LatencyUnit::Micros),
        );
    router
        .fallback(|| async { Problem::not_found("route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this route does not take that method",
            )
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn(record_metrics))
        .layer(middleware::from_fn(close_if_body_unread))
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                ]))
                .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
                .layer(trace)
                .layer(PropagateRequestIdLayer::new(REQUEST_ID))
                .layer(CatchPanicLayer::custom(|_| {
                    tracing::error!("a handler panicked");
                    Problem::internal().into_response()
                })),
        )
}

/// Counts requests and their latency by route template (never the raw path,
/// which would make one series per id).
async fn record_metrics(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    response
}

/// Says `Connection: close` on an answer given before the request's body
/// was read to its end (a 401 from the auth extractor, a 413, a 404 route):
/// the unread rest would otherwise be taken for the next request, so the
/// server drops the connection, and a client that was not told so cannot
/// know whether its next request on it ran.
async fn close_if_body_unread(request: Request, next: Next) -> Response {
    if request.body().is_end_stream() {
        return next.run(request).await;
    }
    let read = Arc::new(AtomicBool::new(false));
    let watched = read.clone();
    let request = request.map(move |inner| {
        axum::body::Body::new(WatchedBody {
            inner,
            read: watched,
        })
    });
    let mut response = next.run(request).await;
    if !read.load(Ordering::Relaxed) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// A request body that says when it has been read to its end.
struct WatchedBody {
    inner: axum::body::Body,
    read: Arc<AtomicBool>,
}

impl http_body::Body for WatchedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if matches!(polled, Poll::Ready(None)) || self.inner.is_end_stream() {
            self.read.store(true, Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes the
/// requests in flight (for at most `grace`) before returning.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// How long a service waits for requests in flight after a stop signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// The address a listener is bound to (unspecified if the OS cannot say).
pub fn bound_addr(listener: &tokio::net::TcpListener) -> std::net::SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
}
