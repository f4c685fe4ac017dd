//! Backends going away and coming back (the production backend): while one
//! is unreachable the service fails closed with 503, never 500 and never by
//! accepting a token it cannot check; once it is back, everything works again.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use shopeezy_testkit::TcpProxy;
use shopeezy_testkit::servers;

use crate::helpers::{Backend, TestApp, assert_problem, assert_token_accepted, spawn_app_with};

#[tokio::test]
async fn a_redis_outage_fails_closed_and_recovers() {
    let Some(redis_url) = servers::reachable_redis().await else {
        return;
    };
    let proxy = TcpProxy::start(&servers::url_host_port(&redis_url))
        .await
        .unwrap();
    let Some(app) = spawn_app_with(Backend::Production, |config| {
        config.redis_url = Some(format!("redis://{}", proxy.host_port()));
    })
    .await
    else {
        return;
    };
    let ann = app.register_user("ann").await;
    let token = app.login_as(&ann).await;
    assert_token_accepted(&app, &token, &ann.id, "customer").await;

    proxy.cut();

    let body = assert_problem(
        app.me(&token).await,
        StatusCode::SERVICE_UNAVAILABLE,
        "revocation_unavailable",
    )
    .await;
    assert!(
        !body["detail"].as_str().unwrap().contains("redis://"),
        "no internals in the answer: {body}"
    );
    let status = app.validate_token(&token).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    let response = app
        .login(&json!({"email": ann.email, "password": ann.password}))
        .await;
    assert_problem(
        response,
        StatusCode::SERVICE_UNAVAILABLE,
        "revocation_unavailable",
    )
    .await;
    // A sign-out that cannot be recorded is not reported as done.
    assert_eq!(
        app.logout(&token).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    let ready = unready(&app).await;
    assert_eq!(ready["checks"]["redis"]["status"], "unavailable", "{ready}");
    assert_eq!(ready["checks"]["database"]["status"], "ok", "{ready}");
    // Liveness does not depend on Redis.
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);

    proxy.restore();

    wait_until_accepted(&app, &token, Duration::from_secs(10)).await;
    assert_token_accepted(&app, &token, &ann.id, "customer").await;
    app.login_as(&ann).await;
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_database_outage_is_503_and_recovers() {
    let proxy = TcpProxy::start(&servers::url_host_port(&servers::postgres_base_url()))
        .await
        .unwrap();
    let Some(app) = spawn_app_with(Backend::Production, |config| {
        config.database_url = servers::url_via(&config.database_url, &proxy.host_port());
    })
    .await
    else {
        return;
    };
    let ann = app.register_user("ann").await;
    let token = app.login_as(&ann).await;

    proxy.cut();

    // Each of these waits for the pool to give up, so they run side by side.
    let bob = json!({
        "name": "Bob",
        "username": "bob",
        "email": "bob@example.com",
        "password": "bob-password-1",
    });
    let login = json!({"email": ann.email, "password": ann.password});
    let (me, register, login, validate, ready) = tokio::join!(
        app.me(&token),
        app.register(&bob),
        app.login(&login),
        app.validate_token(&token),
        unready(&app),
    );
    for response in [me, register, login] {
        assert_problem(
            response,
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
        )
        .await;
    }
    let status = validate.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(
        ready["checks"]["database"]["status"], "unavailable",
        "{ready}"
    );
    assert_eq!(app.get("/healthz").await.status(), StatusCode::OK);

    proxy.restore();

    wait_until_accepted(&app, &token, Duration::from_secs(15)).await;
    // Bob's attempt during the outage left nothing behind.
    app.register_user("bob").await;
    assert_eq!(app.get("/readyz").await.status(), StatusCode::OK);
}

/// The `/readyz` report, which must be a 503.
async fn unready(app: &TestApp) -> Value {
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: Value = response.json().await.unwrap();
    assert_eq!(ready["status"], "unready", "{ready}");
    ready
}

/// Polls `/v1/users/me` with `token` until it answers 200, for at most `limit`.
async fn wait_until_accepted(app: &TestApp, token: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let status = app.me(token).await.status();
        if status == StatusCode::OK {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still {status} {limit:?} after the backend came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
