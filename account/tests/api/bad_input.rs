//! Bad input is a 4xx problem with a `code`, and changes nothing.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_EMAIL, Backend, TestApp, assert_invalid_field, assert_problem, spawn_app,
};

every_backend!(
    a_bad_registration_is_refused_and_creates_nobody,
    a_bad_profile_change_is_refused_and_changes_nothing,
    a_login_needs_an_email_or_a_username,
);

/// A registration that would succeed.
fn good_registration() -> Value {
    json!({
        "name": "Ann",
        "username": "ann",
        "email": "ann@example.com",
        "password": "ann-password-1",
    })
}

fn registration_with(member: &str, value: Value) -> Value {
    let mut body = good_registration();
    body[member] = value;
    body
}

/// The emails of every user, as the admin sees them.
async fn emails(app: &TestApp, admin: &str) -> Vec<String> {
    app.all_users(admin)
        .await
        .iter()
        .map(|u| u["email"].as_str().unwrap().to_owned())
        .collect()
}

async fn a_bad_registration_is_refused_and_creates_nobody(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = app.login_as_admin().await;
    let register = |content_type: Option<&'static str>, body: Vec<u8>| {
        app.send_raw(Method::POST, "/v1/auth/register", None, content_type, body)
    };
    let json = Some("application/json");

    let response = register(json, br#"{"name": "Ann", "username": "#.to_vec()).await;
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
    let response = register(json, b"not json at all".to_vec()).await;
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;

    for wrong_type in [
        registration_with("name", json!(5)),
        registration_with("password", json!(["ann-password-1"])),
        registration_with("email", Value::Null),
        json!(["ann", "ann@example.com"]),
    ] {
        let response = app.register(&wrong_type).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    }
    let mut missing = good_registration();
    missing.as_object_mut().unwrap().remove("password");
    let response = app.register(&missing).await;
    assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;

    // An extra member, even a tempting one, is refused rather than ignored.
    let response = app
        .register(&registration_with("role", json!("admin")))
        .await;
    let body = assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    assert!(body["detail"].as_str().unwrap().contains("role"), "{body}");

    let good = serde_json::to_vec(&good_registration()).unwrap();
    let response = register(None, good.clone()).await;
    assert_problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let response = register(Some("text/plain"), good).await;
    assert_problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;

    let oversized = registration_with("name", json!("a".repeat((1 << 20) + 1)));
    let response = app.register(&oversized).await;
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;

    for (member, value) in [
        ("email", "not-an-email"),
        ("email", "ann@"),
        ("email", "ann@localhost"),
        ("email", "a n@example.com"),
        ("password", "1234567"),
        ("username", "ann!"),
        ("username", "an"),
        ("username", "ann smith"),
        ("name", ""),
        ("name", "   "),
    ] {
        let response = app.register(&registration_with(member, json!(value))).await;
        assert_invalid_field(response, member).await;
    }
    let long_password = "p".repeat(257);
    let response = app
        .register(&registration_with("password", json!(long_password)))
        .await;
    assert_invalid_field(response, "password").await;
    let long_username = "u".repeat(33);
    let response = app
        .register(&registration_with("username", json!(long_username)))
        .await;
    assert_invalid_field(response, "username").await;

    // Nobody was created, and the good registration still goes through.
    assert_eq!(emails(&app, &admin).await, [ADMIN_EMAIL]);
    let response = app.register(&good_registration()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    // The bounds themselves are accepted: 8 and 256 characters.
    for (username, password) in [("eight", "8 chars!"), ("long", &"p".repeat(256))] {
        let response = app
            .register(&json!({
                "name": username,
                "username": username,
                "email": format!("{username}@example.com"),
                "password": password,
            }))
            .await;
        assert_eq!(response.status(), StatusCode::CREATED, "{username}");
    }
}

async fn a_bad_profile_change_is_refused_and_changes_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.register_user("ann").await;
    let token = app.login_as(&ann).await;
    let before = app.me_json(&token).await;
    let patch = |content_type: Option<&'static str>, body: Vec<u8>| {
        app.send_raw(
            Method::PATCH,
            "/v1/users/me",
            Some(&token),
            content_type,
            body,
        )
    };
    let json = Some("application/json");

    let response = patch(json, br#"{"name": "#.to_vec()).await;
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;
    let response = patch(None, br#"{"name": "Mallory"}"#.to_vec()).await;
    assert_problem(
        response,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let oversized = serde_json::to_vec(&json!({"name": "a".repeat(2 << 20)})).unwrap();
    let response = patch(json, oversized).await;
    assert_problem(response, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;

    for body in [
        json!({"name": 7}),
        json!({"username": true}),
        json!({"role": "admin"}),
        json!({"id": uuid::Uuid::now_v7()}),
        json!({"name": "Mallory", "password_hash": "x"}),
    ] {
        let response = app.update_me(&token, &body).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    }
    for (body, field) in [
        (json!({"name": ""}), "name"),
        (json!({"username": "no spaces"}), "username"),
        (json!({"username": "x"}), "username"),
        (
            json!({"email": "not-an-email", "current_password": ann.password}),
            "email",
        ),
        (
            json!({"password": "short", "current_password": ann.password}),
            "password",
        ),
        (
            json!({"password": "p".repeat(257), "current_password": ann.password}),
            "password",
        ),
        // One bad member fails the whole change: the good one is not applied.
        (json!({"name": "Mallory", "username": "a"}), "username"),
    ] {
        let response = app.update_me(&token, &body).await;
        assert_invalid_field(response, field).await;
    }

    assert_eq!(
        app.me_json(&token).await,
        before,
        "the profile is unchanged"
    );
    app.login_as(&ann).await;
}

async fn a_login_needs_an_email_or_a_username(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.register_user("ann").await;
    for body in [
        json!({"password": ann.password}),
        json!({"email": "", "password": ann.password}),
        json!({"username": "  ", "password": ann.password}),
        json!({"email": ann.email, "username": ann.username, "password": ann.password}),
    ] {
        let response = app.login(&body).await;
        let problem = assert_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert!(problem["field"].is_string(), "{problem}");
    }
    for body in [
        json!({"email": ann.email}),
        json!({"email": ann.email, "password": 12345678}),
        json!({"email": ann.email, "password": ann.password, "remember_me": true}),
    ] {
        let response = app.login(&body).await;
        assert_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "invalid_body").await;
    }
    let response = app
        .send_raw(
            Method::POST,
            "/v1/auth/login",
            None,
            Some("application/json"),
            "{",
        )
        .await;
    assert_problem(response, StatusCode::BAD_REQUEST, "malformed_json").await;

    // None of this counted against Ann's account.
    app.login_as(&ann).await;
}
