//! Operations endpoints: liveness, readiness, metrics, the API description.

use std::time::Duration;

use reqwest::Method;

use crate::helpers::{Backend, eventually, send, spawn_app};

every_backend!(
    health_and_readiness_are_reported,
    metrics_count_requests,
    the_api_is_described,
);

async fn health_and_readiness_are_reported(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    let health = send(app.host(Method::GET, "/healthz")).await;
    health.expect(200);
    assert_eq!(health.body["status"], "alive");

    // Ready once the revocation view has come from the account service
    // (a moment after the start).
    assert!(
        eventually(Duration::from_secs(10), || async {
            send(app.host(Method::GET, "/readyz")).await.status == 200
        })
        .await
    );
    let ready = send(app.host(Method::GET, "/readyz")).await;
    ready.expect(200);
    assert_eq!(ready.body["status"], "ready");
    assert_eq!(ready.body["checks"]["database"]["status"], "ok");
    assert_eq!(ready.body["checks"]["auth"]["status"], "ok");

    // Every answer carries a request id, the client's when it sent one.
    assert!(
        ready
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty())
    );
    let echoed = send(
        app.host(Method::GET, "/healthz")
            .header("x-request-id", "trace-me-123"),
    )
    .await;
    assert_eq!(echoed.header("x-request-id"), Some("trace-me-123"));
}

async fn metrics_count_requests(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    send(app.host(Method::GET, "/v1/products"))
        .await
        .expect(200);

    let metrics = send(app.host(Method::GET, "/metrics")).await;

    metrics.expect(200);
    let text = metrics.body.as_str().unwrap_or_default();
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("http_requests_total")
            && l.contains("route=\"/v1/products\"")
            && l.contains("status=\"200\"")),
        "requests are counted by route template and status"
    );
}

async fn the_api_is_described(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    let spec = send(app.host(Method::GET, "/openapi.json")).await;
    spec.expect(200);
    let paths = &spec.body["paths"];
    for path in [
        "/v1/checkout",
        "/v1/products",
        "/v1/products/{id}",
        "/v1/products/{id}/stock",
        "/v1/cart",
        "/v1/cart/items/{product_id}",
        "/v1/cart/codes",
        "/v1/orders",
        "/v1/orders/{id}/cancel",
        "/v1/admin/orders",
        "/v1/admin/orders/{id}/status",
    ] {
        assert!(paths.get(path).is_some(), "{path} is documented");
    }

    let docs = send(app.host(Method::GET, "/docs")).await;
    docs.expect(200);
    assert!(
        docs.header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
    );
}
