//! Revocation and throttling in Redis (the production backend) are shared by
//! every replica of the service.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    Backend, assert_problem, assert_token_accepted, assert_token_refused, spawn_app,
};

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
