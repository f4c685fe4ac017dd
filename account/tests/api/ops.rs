//! Operations: liveness, readiness, metrics, the API description and docs.

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

use crate::helpers::{Backend, assert_problem, spawn_app};

every_backend!(
    health_readiness_metrics_and_docs,
    unknown_routes_and_methods_are_problems,
);

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

async fn health_readiness_metrics_and_docs(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    let response = app.get("/healthz").await;
    assert_eq!(response.status(), StatusCode::OK);

    let response = app.get("/readyz").await;
    assert_eq!(response.status(), StatusCode::OK);
    let ready: Value = response.json().await.unwrap();
    assert_eq!(ready["status"], "ready", "{ready}");
    let revocation = match backend {
        Backend::Embedded => "in-process",
        Backend::Production | Backend::MySql => "redis",
    };
    for check in ["database", revocation] {
        assert_eq!(ready["checks"][check]["status"], "ok", "{check}: {ready}");
    }
    assert_eq!(ready["checks"].as_object().unwrap().len(), 2, "{ready}");

    let response = app.get("/metrics").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(content_type(&response).starts_with("text/plain"));
    let metrics = response.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("http_requests_total{") && l.contains("route=\"/healthz\"")),
        "{metrics}"
    );

    let response = app.get("/openapi.json").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(content_type(&response).starts_with("application/json"));
    let openapi: Value = response.json().await.unwrap();
    let paths = openapi["paths"].as_object().expect("paths");
    for path in [
        "/v1/auth/register",
        "/v1/auth/login",
        "/v1/auth/logout",
        "/v1/users/me",
        "/v1/admin/users",
        "/v1/admin/users/{id}",
        "/.well-known/jwks.json",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }

    let response = app.get("/docs").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(content_type(&response).starts_with("text/html"));
    assert!(response.text().await.unwrap().contains("<html"));
}

async fn unknown_routes_and_methods_are_problems(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    assert_problem(
        app.get("/v1/nothing-here").await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let response = app
        .client
        .delete(app.url("/v1/auth/register"))
        .send()
        .await
        .unwrap();
    assert_problem(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    // Every answer carries a request id, and a client's own is kept.
    let response = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "test-request-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "test-request-1");
    assert!(
        app.get("/healthz")
            .await
            .headers()
            .contains_key("x-request-id")
    );
}
