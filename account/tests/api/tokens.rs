//! Forged, altered and stale tokens are refused by REST and gRPC alike.
//!
//! The tests mint tokens with the app's own signing key, so each bad token
//! differs from a good one in exactly one way; the first test shows that a
//! token minted this way is accepted, which is what makes the others mean
//! something.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::helpers::{
    Backend, TestApp, TestUser, assert_token_accepted, assert_token_refused, new_signing_key_pem,
    sign_token, spawn_app, token_payload, unix_now, valid_claims,
};

every_backend!(
    a_token_minted_with_the_service_key_is_accepted,
    a_token_with_a_tampered_signature_is_refused,
    a_token_with_a_tampered_payload_is_refused,
    an_alg_none_token_is_refused,
    an_expired_token_is_refused,
    a_token_not_valid_yet_is_refused,
    a_token_for_another_audience_is_refused,
    a_token_from_another_issuer_is_refused,
    a_token_signed_by_another_key_is_refused,
    a_missing_or_malformed_authorization_is_refused,
);

/// The app and a signed-in customer, Ann, with her token.
async fn app_with_ann(backend: Backend) -> Option<(TestApp, TestUser, String)> {
    let app = spawn_app(backend).await?;
    let ann = app.register_user("ann").await;
    let token = app.login_as(&ann).await;
    Some((app, ann, token))
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

async fn a_token_minted_with_the_service_key_is_accepted(backend: Backend) {
    let Some((app, ann, _)) = app_with_ann(backend).await else {
        return;
    };
    let token = app.mint(&valid_claims(&ann.id)).await;
    assert_token_accepted(&app, &token, &ann.id, "customer").await;
    // A token without a kid is checked against the service's key too.
    let token = sign_token(&app.signing_key_pem, None, &valid_claims(&ann.id));
    assert_token_accepted(&app, &token, &ann.id, "customer").await;
}

async fn a_token_with_a_tampered_signature_is_refused(backend: Backend) {
    let Some((app, ann, token)) = app_with_ann(backend).await else {
        return;
    };
    let (signed, signature) = token.rsplit_once('.').unwrap();
    // A character in the middle: every one of its bits is part of the signature.
    let mut signature: Vec<char> = signature.chars().collect();
    let middle = signature.len() / 2;
    signature[middle] = if signature[middle] == 'A' { 'B' } else { 'A' };
    let tampered = format!("{signed}.{}", signature.iter().collect::<String>());
    assert_ne!(tampered, token);

    assert_token_refused(&app, &tampered).await;
    assert_token_accepted(&app, &token, &ann.id, "customer").await;
}

async fn a_token_with_a_tampered_payload_is_refused(backend: Backend) {
    let Some((app, _ann, token)) = app_with_ann(backend).await else {
        return;
    };
    let bob = app.register_user("bob").await;
    let parts: Vec<&str> = token.split('.').collect();

    // Claiming the admin role, and separately to be Bob, under Ann's signature.
    let mut as_admin = token_payload(&token);
    as_admin["role"] = json!("admin");
    let mut as_other = token_payload(&token);
    as_other["sub"] = json!(bob.id);
    for payload in [as_admin, as_other] {
        let tampered = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);
        assert_token_refused(&app, &tampered).await;
    }
}

async fn an_alg_none_token_is_refused(backend: Backend) {
    let Some((app, _ann, token)) = app_with_ann(backend).await else {
        return;
    };
    let payload = token.split('.').nth(1).unwrap();
    for alg in ["none", "None", "NONE"] {
        let header = b64(&json!({"alg": alg, "typ": "JWT"}));
        assert_token_refused(&app, &format!("{header}.{payload}.")).await;
    }
    // Nor with the key id of the service's key, or an HMAC "signed" with its public key.
    let kid = app.kid().await;
    let header = b64(&json!({"alg": "none", "typ": "JWT", "kid": kid}));
    assert_token_refused(&app, &format!("{header}.{payload}.")).await;
    let x = app.jwks().await["keys"][0]["x"]
        .as_str()
        .unwrap()
        .to_owned();
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &token_payload(&token),
        &jsonwebtoken::EncodingKey::from_secret(x.as_bytes()),
    )
    .unwrap();
    assert_token_refused(&app, &hs256).await;
}

async fn an_expired_token_is_refused(backend: Backend) {
    let Some((app, ann, _)) = app_with_ann(backend).await else {
        return;
    };
    let now = unix_now();
    let mut claims = valid_claims(&ann.id);
    claims["iat"] = json!(now - 3600);
    claims["exp"] = json!(now - 5);
    assert_token_refused(&app, &app.mint(&claims).await).await;
}

async fn a_token_not_valid_yet_is_refused(backend: Backend) {
    let Some((app, ann, _)) = app_with_ann(backend).await else {
        return;
    };
    let now = unix_now();
    let mut claims = valid_claims(&ann.id);
    claims["nbf"] = json!(now + 300);
    let token = app.mint(&claims).await;
    assert_token_refused(&app, &token).await;
    let response = app.me(&token).await;
    let body =
        crate::helpers::assert_problem(response, reqwest::StatusCode::UNAUTHORIZED, "unauthorized")
            .await;
    assert_eq!(body["detail"], "the token is not valid yet", "{body}");
    // One whose not-before time has come is accepted.
    claims["nbf"] = json!(now - 5);
    assert_token_accepted(&app, &app.mint(&claims).await, &ann.id, "customer").await;
}

async fn a_token_for_another_audience_is_refused(backend: Backend) {
    let Some((app, ann, _)) = app_with_ann(backend).await else {
        return;
    };
    let mut claims = valid_claims(&ann.id);
    claims["aud"] = json!("some-other-service");
    assert_token_refused(&app, &app.mint(&claims).await).await;
}

async fn a_token_from_another_issuer_is_refused(backend: Backend) {
    let Some((app, ann, _)) = app_with_ann(backend).await else {
        return;
    };
    let mut claims = valid_claims(&ann.id);
    claims["iss"] = json!("evil-account");
    assert_token_refused(&app, &app.mint(&claims).await).await;
}

async fn a_token_signed_by_another_key_is_refused(backend: Backend) {
    let Some((app, ann, _)) = app_with_ann(backend).await else {
        return;
    };
    let other_key = new_signing_key_pem();
    let claims = valid_claims(&ann.id);
    // Claiming the service's key id, another one, and none.
    let kid = app.kid().await;
    for kid in [Some(kid.as_str()), Some("some-other-key"), None] {
        assert_token_refused(&app, &sign_token(&other_key, kid, &claims)).await;
    }
}

async fn a_missing_or_malformed_authorization_is_refused(backend: Backend) {
    let Some((app, _ann, token)) = app_with_ann(backend).await else {
        return;
    };
    let me = app.url("/v1/users/me");
    let refused = [
        app.client.get(&me).send().await.unwrap(),
        app.client
            .get(&me)
            .header("authorization", format!("Basic {token}"))
            .send()
            .await
            .unwrap(),
        app.client
            .get(&me)
            .header("authorization", "Bearer ")
            .send()
            .await
            .unwrap(),
        app.client
            .get(&me)
            .bearer_auth("not-a-jwt")
            .send()
            .await
            .unwrap(),
    ];
    for response in refused {
        crate::helpers::assert_problem(response, reqwest::StatusCode::UNAUTHORIZED, "unauthorized")
            .await;
    }
    for token in ["", "not-a-jwt", "a.b.c"] {
        let status = app.validate_token(token).await.unwrap_err();
        assert_eq!(
            status.code(),
            tonic::Code::Unauthenticated,
            "{token:?}: {status:?}"
        );
    }
}
