//! Registration, sign-in (and its throttling), sign-out, and the public keys.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_EMAIL, ADMIN_PASSWORD, AUDIENCE, Backend, ISSUER, assert_problem, assert_token_refused,
    client_from, spawn_app, spawn_app_with, token_payload, unix_now,
};

every_backend!(
    register_login_me_logout,
    emails_and_usernames_are_unique_in_any_case,
    racing_registrations_of_one_email_make_one_user,
    repeated_wrong_passwords_are_throttled,
    wrong_passwords_from_one_address_do_not_lock_the_owner_out,
    an_address_failing_on_many_accounts_is_throttled_for_all,
    concurrent_guesses_get_no_more_tries_than_sequential_ones,
    an_unknown_user_gets_the_same_answer_as_a_wrong_password,
    the_jwks_verifies_a_token_offline,
);

async fn register_login_me_logout(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };

    // Ann registers: a customer, and nothing secret in the answer.
    let response = app
        .register(&json!({
            "name": "Ann Smith",
            "username": "Ann_S",
            "email": "Ann@Example.com",
            "password": "correct horse battery",
        }))
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let ann: Value = response.json().await.unwrap();
    let ann_id = ann["id"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(&ann_id).is_ok(), "{ann}");
    assert_eq!(ann["name"], "Ann Smith");
    assert_eq!(ann["username"], "ann_s");
    assert_eq!(ann["email"], "ann@example.com");
    assert_eq!(ann["role"], "customer");
    assert!(ann["created_at"].is_string() && ann["updated_at"].is_string());
    let members: Vec<&String> = ann.as_object().unwrap().keys().collect();
    assert_eq!(
        members,
        [
            "created_at",
            "email",
            "id",
            "name",
            "role",
            "updated_at",
            "username"
        ],
        "a user carries exactly these members, never a password or hash"
    );

    // She signs in by email (in another case) and by username.
    let by_email = app
        .login(&json!({"email": "ANN@example.COM", "password": "correct horse battery"}))
        .await;
    assert_eq!(by_email.status(), StatusCode::OK);
    let by_email: Value = by_email.json().await.unwrap();
    assert_eq!(by_email["token_type"], "Bearer");
    assert_eq!(by_email["expires_in"], 3600);
    assert_eq!(by_email["user"], ann);
    let by_username = app
        .login(&json!({"username": "ann_s", "password": "correct horse battery"}))
        .await;
    assert_eq!(by_username.status(), StatusCode::OK);
    let by_username: Value = by_username.json().await.unwrap();
    assert_eq!(by_username["user"]["id"], ann_id.as_str());
    let token = by_email["access_token"].as_str().unwrap();
    let other_token = by_username["access_token"].as_str().unwrap();
    assert_ne!(token, other_token, "each sign-in gets its own token");

    // The token shows her profile, and other services can check it.
    assert_eq!(app.me_json(token).await, ann);
    let valid = app
        .validate_token(token)
        .await
        .expect("a fresh token is valid");
    let claims = token_payload(token);
    assert_eq!(valid.user_id, ann_id);
    assert_eq!(valid.username, "ann_s");
    assert_eq!(valid.email, "ann@example.com");
    assert_eq!(valid.role, "customer");
    assert_eq!(valid.token_id, claims["jti"].as_str().unwrap());
    let expires_at = valid.expires_at.expect("expires_at is set");
    assert_eq!(expires_at.seconds, claims["exp"].as_i64().unwrap());
    let now = unix_now() as i64;
    assert!(
        (now + 3590..=now + 3600).contains(&expires_at.seconds),
        "expires in an hour: {expires_at:?}, now {now}"
    );

    // She signs out: that token is refused everywhere, her other one is not.
    let response = app.logout(token).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_token_refused(&app, token).await;
    assert_eq!(app.me_json(other_token).await["id"], ann_id.as_str());
    // Signing out twice is refused like any revoked token.
    assert_problem(
        app.logout(token).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
}

async fn emails_and_usernames_are_unique_in_any_case(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.register_user("ann").await;

    let response = app
        .register(&json!({
            "name": "Another Ann",
            "username": "ann2",
            "email": "ANN@example.com",
            "password": "another-password",
        }))
        .await;
    let body = assert_problem(response, StatusCode::CONFLICT, "email_taken").await;
    assert!(
        body["type"].as_str().unwrap().contains("email-taken"),
        "{body}"
    );

    let response = app
        .register(&json!({
            "name": "Another Ann",
            "username": "ANN",
            "email": "ann2@example.com",
            "password": "another-password",
        }))
        .await;
    assert_problem(response, StatusCode::CONFLICT, "username_taken").await;

    // Neither attempt made a user, and Ann's password is still hers.
    let admin = app.login_as_admin().await;
    let emails: Vec<Value> = app
        .all_users(&admin)
        .await
        .iter()
        .map(|u| u["email"].clone())
        .collect();
    assert_eq!(
        emails,
        [json!(crate::helpers::ADMIN_EMAIL), json!(ann.email)]
    );
    app.login_as(&ann).await;
}

async fn racing_registrations_of_one_email_make_one_user(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let bodies: Vec<Value> = (0..8)
        .map(|i| {
            json!({
                "name": format!("Ann {i}"),
                "username": format!("ann{i}"),
                "email": if i % 2 == 0 { "ann@example.com" } else { "ANN@EXAMPLE.COM" },
                "password": "ann-password-1",
            })
        })
        .collect();
    let mut created = 0;
    for response in futures::future::join_all(bodies.iter().map(|b| app.register(b))).await {
        match response.status() {
            StatusCode::CREATED => created += 1,
            _ => {
                assert_problem(response, StatusCode::CONFLICT, "email_taken").await;
            }
        }
    }
    assert_eq!(created, 1, "exactly one registration wins");
    let admin = app.login_as_admin().await;
    assert_eq!(app.all_users(&admin).await.len(), 2);
}

async fn repeated_wrong_passwords_are_throttled(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.register_user("ann").await;
    let bob = app.register_user("bob").await;

    // Five wrong passwords for Ann's account, by email, by username, in any case.
    let wrong = |attempt: u32| format!("wrong-{attempt}");
    let attempts = [
        json!({"email": ann.email, "password": wrong(1)}),
        json!({"email": ann.email, "password": wrong(2)}),
        json!({"email": ann.email.to_uppercase(), "password": wrong(3)}),
        json!({"username": ann.username, "password": wrong(4)}),
        json!({"username": ann.username.to_uppercase(), "password": wrong(5)}),
    ];
    for attempt in &attempts {
        let response = app.login(attempt).await;
        assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }

    // The sixth attempt is refused even with the right password, however she
    // names her account.
    for login in [
        json!({"email": ann.email, "password": ann.password}),
        json!({"username": ann.username, "password": ann.password}),
    ] {
        assert_throttled(app.login(&login).await).await;
    }

    // Other accounts are not affected.
    app.login_as(&bob).await;
}

/// The seconds of a 429 answer's `Retry-After`, checked against its body.
async fn assert_throttled(response: reqwest::Response) -> u64 {
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is a number of seconds");
    assert!(
        (1..=900).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    let body = assert_problem(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    assert_eq!(body["retry_after"], retry_after, "{body}");
    retry_after
}

/// Someone who knows the admin's email and guesses passwords from one
/// address is stopped there, without locking the admin out: the admin,
/// signing in from another address, still gets in.
async fn wrong_passwords_from_one_address_do_not_lock_the_owner_out(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let attacker = client_from("127.0.0.2");
    let admin = client_from("127.0.0.3");
    for attempt in 0..5 {
        let response = app
            .login_via(
                &attacker,
                &json!({"email": ADMIN_EMAIL, "password": format!("guess-{attempt}")}),
            )
            .await;
        assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // The attacker is stopped, even when the next guess is right...
    let right = json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
    assert_throttled(app.login_via(&attacker, &right).await).await;
    // ...while the admin signs in from anywhere else.
    let response = app.login_via(&admin, &right).await;
    assert_eq!(response.status(), StatusCode::OK);
    app.login_as_admin().await;
    // And the attacker's address is still stopped for that account.
    assert_throttled(app.login_via(&attacker, &right).await).await;
}

/// Credential stuffing: an address failing on many accounts (known or not)
/// is throttled for every account, also one it never tried; other
/// addresses are not, and a success from that address does not reset it.
async fn an_address_failing_on_many_accounts_is_throttled_for_all(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |config| {
        config.login_max_failures_per_address = 6;
    })
    .await
    else {
        return;
    };
    let ann = app.register_user("ann").await;
    let bob = app.register_user("bob").await;
    let stuffer = client_from("127.0.0.4");
    let wrong = |login: &str| json!({"email": login, "password": "password123"});

    for n in 0..3 {
        let response = app
            .login_via(&stuffer, &wrong(&format!("someone-{n}@example.com")))
            .await;
        assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    // One account the stuffer holds: its success forgets nothing.
    let response = app
        .login_via(
            &stuffer,
            &json!({"email": bob.email, "password": bob.password}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    for login in [ann.email.as_str(), ADMIN_EMAIL, "nobody@example.com"] {
        let response = app.login_via(&stuffer, &wrong(login)).await;
        assert_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }

    // Six failures from that address: every account is refused there, with
    // the right password, also Bob's, who never failed.
    let ann_right = json!({"email": ann.email, "password": ann.password});
    assert_throttled(app.login_via(&stuffer, &ann_right).await).await;
    let bob_right = json!({"email": bob.email, "password": bob.password});
    assert_throttled(app.login_via(&stuffer, &bob_right).await).await;
    // Ann, from her own address, signs in.
    let response = app.login_via(&client_from("127.0.0.5"), &ann_right).await;
    assert_eq!(response.status(), StatusCode::OK);
}

async fn an_unknown_user_gets_the_same_answer_as_a_wrong_password(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.register_user("ann").await;

    let wrong_password = app
        .login(&json!({"email": ann.email, "password": "not-her-password"}))
        .await;
    let wrong_password = assert_problem(
        wrong_password,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let unknown_user = app
        .login(&json!({"email": "nobody@example.com", "password": "not-her-password"}))
        .await;
    let unknown_user = assert_problem(
        unknown_user,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let unknown_username = app
        .login(&json!({"username": "nobody", "password": "not-her-password"}))
        .await;
    let unknown_username = assert_problem(
        unknown_username,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;

    assert_eq!(unknown_user, wrong_password);
    assert_eq!(unknown_username, wrong_password);
}

async fn the_jwks_verifies_a_token_offline(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ann = app.register_user("ann").await;
    let token = app.login_as(&ann).await;

    let jwks = app.jwks().await;
    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{jwks}");
    let key = &keys[0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["crv"], "Ed25519");
    assert_eq!(key["alg"], "EdDSA");
    assert!(
        key.get("d").is_none(),
        "the private part is never published"
    );

    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid.as_deref(), key["kid"].as_str());

    let decoding = DecodingKey::from_ed_components(key["x"].as_str().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&[AUDIENCE]);
    validation.set_issuer(&[ISSUER]);
    let verified = jsonwebtoken::decode::<Value>(&token, &decoding, &validation)
        .expect("the JWKS key verifies the token");
    assert_eq!(verified.claims["sub"], ann.id.as_str());
    assert_eq!(verified.claims["role"], "customer");

    // The same key refuses a token signed by any other.
    let forged = crate::helpers::sign_token(
        &crate::helpers::new_signing_key_pem(),
        header.kid.as_deref(),
        &verified.claims,
    );
    assert!(jsonwebtoken::decode::<Value>(&forged, &decoding, &validation).is_err());
}

/// Guesses sent all at once are counted before any password is checked, so
/// they get no more tries than guesses sent one after another.
async fn concurrent_guesses_get_no_more_tries_than_sequential_ones(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let attacker = client_from("127.0.0.4");
    let guesses = (0..24).map(|n| {
        let body = json!({"email": ADMIN_EMAIL, "password": format!("guess-{n}")});
        let (app, attacker) = (&app, &attacker);
        async move { app.login_via(attacker, &body).await.status() }
    });
    let statuses = futures::future::join_all(guesses).await;
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let throttled = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!(checked + throttled, 24, "{statuses:?}");
    assert!(
        checked <= 5,
        "{checked} passwords were checked: {statuses:?}"
    );
}
