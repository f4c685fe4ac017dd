//! Revocation and throttling in Redis (the production backend) are shared by
//! every replica of the service; revocations are also durable in the
//! database, so neither a Redis that lost its keys nor a restart of the
//! service makes a revoked token valid again.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    Backend, TestApp, TestUser, assert_problem, assert_token_accepted, assert_token_refused,
    spawn_app, unix_now, valid_claims,
};

every_backend!(
    revoked_tokens_stay_refused_after_a_restart,
    expired_revocations_are_pruned,
);

/// A sign-out, a password change and a throttled account on one replica are
/// in force on every other at once.
#[tokio::test]
async fn revocation_and_throttling_are_shared_by_every_replica() {
    let Some(one) = spawn_app(Backend::Production).await else {
        return;
    };
    let two = one.replica().await;
    let ann = one.register_user("ann").await;
    let bob = one.register_user("bob").await;

    let token = one.login_as(&ann).await;
    assert_token_accepted(&two, &token, &ann.id, "customer").await;
    assert_eq!(one.logout(&token).await.status(), StatusCode::NO_CONTENT);
    assert_token_refused(&two, &token).await;

    let token = two.login_as(&ann).await;
    let response = one
        .update_me(
            &token,
            &json!({"password": "ann-new-password", "current_password": ann.password}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_token_refused(&two, &token).await;

    for _ in 0..5 {
        let response = one
            .login(&json!({"email": bob.email, "password": "wrong-password"}))
            .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let response = two
        .login(&json!({"email": bob.email, "password": bob.password}))
        .await;
    assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
}

/// Ann signed out of one token and changed her password under another; Bob
/// is signed in. Returns (ann's signed-out token, ann's token from before
/// the password change, bob, bob's token).
async fn revoke_some(app: &TestApp) -> (String, String, TestUser, String) {
    let ann = app.register_user("ann").await;
    let bob = app.register_user("bob").await;
    let signed_out = app.login_as(&ann).await;
    assert_eq!(
        app.logout(&signed_out).await.status(),
        StatusCode::NO_CONTENT
    );
    let before_change = app.login_as(&ann).await;
    let response = app
        .update_me(
            &before_change,
            &json!({"password": "ann-new-password", "current_password": ann.password}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let bob_token = app.login_as(&bob).await;
    assert_token_refused(app, &signed_out).await;
    assert_token_refused(app, &before_change).await;
    (signed_out, before_change, bob, bob_token)
}

/// Redis restarted empty (here: every key of the app deleted): the very
/// first checks after it, on either replica, REST or gRPC, still refuse the
/// revoked tokens, and still accept the others.
#[tokio::test]
async fn revoked_tokens_stay_refused_when_redis_loses_its_keys() {
    let Some(one) = spawn_app(Backend::Production).await else {
        return;
    };
    let two = one.replica().await;
    let (signed_out, before_change, bob, bob_token) = revoke_some(&one).await;

    one.forget_redis_keys().await;
    // The first check after the loss, by gRPC (as the host asks) on the
    // replica that did not revoke.
    let status = two.validate_token(&signed_out).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    assert_token_refused(&two, &before_change).await;
    assert_token_refused(&one, &signed_out).await;
    assert_token_refused(&one, &before_change).await;
    assert_token_accepted(&one, &bob_token, &bob.id, "customer").await;

    // Again, with many checks racing on both replicas right after the loss.
    one.forget_redis_keys().await;
    let checks = (0..24).map(|i| {
        let app = if i % 2 == 0 { &one } else { &two };
        let token = if i % 3 == 0 {
            &before_change
        } else {
            &signed_out
        };
        async move { app.validate_token(token).await }
    });
    for result in futures::future::join_all(checks).await {
        let status = result.expect_err("a revoked token is refused");
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
    }
    assert_token_accepted(&two, &bob_token, &bob.id, "customer").await;

    // A sign-out while Redis is empty is kept too, also through another loss.
    one.forget_redis_keys().await;
    assert_eq!(
        one.logout(&bob_token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_token_refused(&two, &bob_token).await;
    one.forget_redis_keys().await;
    assert_token_refused(&two, &bob_token).await;
    assert_token_refused(&one, &signed_out).await;
}

/// The service restarted (in-process revocation: on the same SQLite file)
/// still refuses what it revoked before.
async fn revoked_tokens_stay_refused_after_a_restart(backend: Backend) {
    let Some(mut app) = spawn_app(backend).await else {
        return;
    };
    let (signed_out, before_change, bob, bob_token) = revoke_some(&app).await;

    app.restart_with(|_| {}).await;

    assert_token_refused(&app, &signed_out).await;
    assert_token_refused(&app, &before_change).await;
    assert_token_accepted(&app, &bob_token, &bob.id, "customer").await;
}

/// A revocation is kept while the token could be used and deleted after.
async fn expired_revocations_are_pruned(backend: Backend) {
    let Some(mut app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.register_user("ann").await;
    let mut claims = valid_claims(&ann.id);
    claims["exp"] = json!(unix_now() + 2);
    let short_lived = app.mint(&claims).await;
    let long_lived = app.login_as(&ann).await;
    for token in [&short_lived, &long_lived] {
        assert_eq!(app.logout(token).await.status(), StatusCode::NO_CONTENT);
    }
    let rows = "SELECT COUNT(*) FROM revoked_tokens";
    assert_eq!(app.count(rows).await, 2);

    tokio::time::sleep(Duration::from_millis(3100)).await;
    // Pruning runs at start (and every ten minutes after).
    app.restart_with(|_| {}).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.count(rows).await != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired revocation is not pruned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_token_refused(&app, &long_lived).await;
}
