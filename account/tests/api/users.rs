//! The caller's own profile: read, change (password included), delete.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    Backend, assert_invalid_field, assert_problem, assert_token_accepted, assert_token_refused,
    spawn_app,
};

every_backend!(
    a_user_changes_name_and_username,
    changing_the_email_needs_the_current_password,
    changing_the_password_signs_out_everywhere,
    deleting_the_account_revokes_its_tokens,
);

async fn a_user_changes_name_and_username(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.register_user("ann").await;
    let bob = app.register_user("bob").await;
    let token = app.login_as(&ann).await;
    let before = app.me_json(&token).await;

    let response = app
        .update_me(
            &token,
            &json!({"name": "Ann B. Smith", "username": "Ann.Smith"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let after: serde_json::Value = response.json().await.unwrap();
    assert_eq!(after["name"], "Ann B. Smith");
    assert_eq!(after["username"], "ann.smith");
    assert_eq!(after["email"], before["email"]);
    assert_eq!(after["created_at"], before["created_at"]);
    assert_eq!(app.me_json(&token).await, after, "the change is stored");
    // She signs in with her new username; the token still works.
    let response = app
        .login(&json!({"username": "ann.smith", "password": ann.password}))
        .await;
    assert_eq!(response.status(), StatusCode::OK);

    // Bob's username is taken, in any case.
    let response = app.update_me(&token, &json!({"username": "BOB"})).await;
    assert_problem(response, StatusCode::CONFLICT, "username_taken").await;
    assert_eq!(app.me_json(&token).await, after);
    app.login_as(&bob).await;
}

async fn changing_the_email_needs_the_current_password(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.register_user("ann").await;
    let bob = app.register_user("bob").await;
    let token = app.login_as(&ann).await;
    let before = app.me_json(&token).await;

    let response = app
        .update_me(&token, &json!({"email": "ann@new.example.com"}))
        .await;
    assert_invalid_field(response, "current_password").await;
    let response = app
        .update_me(
            &token,
            &json!({"email": "ann@new.example.com", "current_password": "wrong-password"}),
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "invalid_current_password").await;
    let response = app
        .update_me(
            &token,
            &json!({"email": bob.email.to_uppercase(), "current_password": ann.password}),
        )
        .await;
    assert_problem(response, StatusCode::CONFLICT, "email_taken").await;
    assert_eq!(app.me_json(&token).await, before, "nothing changed");

    let response = app
        .update_me(
            &token,
            &json!({"email": "Ann@New.Example.com", "current_password": ann.password}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    app.login_with("ann@new.example.com", &ann.password).await;
    let response = app
        .login(&json!({"email": ann.email, "password": ann.password}))
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

async fn changing_the_password_signs_out_everywhere(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.register_user("ann").await;
    let token = app.login_as(&ann).await;
    let other_session = app.login_as(&ann).await;
    let before = app.me_json(&token).await;
    let new_password = "a brand new password";

    // Without the current password, or with a wrong one: refused, nothing changes.
    let response = app
        .update_me(&token, &json!({"password": new_password}))
        .await;
    assert_invalid_field(response, "current_password").await;
    let response = app
        .update_me(
            &token,
            &json!({"password": new_password, "current_password": "not-the-password"}),
        )
        .await;
    assert_problem(response, StatusCode::FORBIDDEN, "invalid_current_password").await;
    assert_eq!(app.me_json(&token).await, before);
    assert_token_accepted(&app, &other_session, &ann.id, "customer").await;

    let response = app
        .update_me(
            &token,
            &json!({"password": new_password, "current_password": ann.password}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.text().await.unwrap();
    assert!(
        !body.contains(new_password) && !body.contains("argon2"),
        "no password or hash in the answer: {body}"
    );

    // Every token issued before the change is refused, on REST and on gRPC.
    assert_token_refused(&app, &token).await;
    assert_token_refused(&app, &other_session).await;
    // The old password no longer signs in; the new one does, and its token works.
    let response = app
        .login(&json!({"email": ann.email, "password": ann.password}))
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let new_token = app.login_with(&ann.email, new_password).await;
    assert_token_accepted(&app, &new_token, &ann.id, "customer").await;
}

async fn deleting_the_account_revokes_its_tokens(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.register_user("ann").await;
    let bob = app.register_user("bob").await;
    let token = app.login_as(&ann).await;
    let bob_token = app.login_as(&bob).await;

    let response = app.delete_me(&token).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    assert_token_refused(&app, &token).await;
    let response = app
        .login(&json!({"email": ann.email, "password": ann.password}))
        .await;
    assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let admin = app.login_as_admin().await;
    assert_problem(
        app.get_user(&admin, &ann.id).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let status = app.grpc_get_user(&ann.id).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);

    // Bob is untouched, and Ann's email and username are free again, for a new account.
    assert_token_accepted(&app, &bob_token, &bob.id, "customer").await;
    let again = app.register_user("ann").await;
    assert_ne!(again.id, ann.id);
    assert_token_refused(&app, &token).await;
}
