//! Who may call: the host verifies every token itself (the account
//! service's keys) and refuses revoked ones from the revocations the account
//! service pushes, on every replica within a second; with the account
//! service down, signed-in shoppers go on shopping and what was revoked
//! stays refused; a host that never got the revocations fails closed.

use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::json;
use shopeezy_testkit::{StackConfig, User, account::new_signing_key_pem};
use uuid::Uuid;

use crate::helpers::{
    Api, Backend, Options, Reply, eventually, id_of, send, spawn_app, spawn_app_with,
};

every_backend!(
    requests_without_a_valid_token_are_refused,
    a_sign_out_is_refused_by_every_replica_within_a_second,
    a_password_change_or_deletion_is_refused_by_every_replica_within_a_second,
    a_role_change_is_in_force_on_every_replica_within_a_second,
    shoppers_keep_shopping_while_the_account_service_is_down,
    a_host_that_never_reached_the_account_service_fails_closed,
    forged_expired_and_foreign_tokens_are_refused,
);

/// The promise: a revocation is in force on every host within this.
const WITHIN: Duration = Duration::from_secs(1);

/// Polls `GET /v1/cart` as `user` on each of `hosts` until every one
/// answers 401, for at most [`WITHIN`] from `since`; panics otherwise.
async fn refused_everywhere_within_a_second(hosts: &[&Api], user: &User, since: Instant) {
    for host in hosts {
        loop {
            let reply = host.cart(user).await;
            if reply.status == 401 {
                reply.expect_problem(401, "unauthorized");
                break;
            }
            reply.expect(200);
            assert!(
                since.elapsed() < WITHIN,
                "{} still accepts the token {:?} after it was revoked",
                host.host_url,
                since.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `/readyz` of a host.
async fn readyz(host: &Api) -> Reply {
    send(host.host(Method::GET, "/readyz")).await
}

async fn requests_without_a_valid_token_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let routes = [
        (Method::GET, "/v1/cart"),
        (Method::DELETE, "/v1/cart"),
        (Method::POST, "/v1/checkout"),
        (Method::GET, "/v1/orders"),
        (Method::POST, "/v1/products"),
        (Method::GET, "/v1/admin/orders"),
    ];
    for (method, path) in routes {
        for token in [
            None,
            Some("not-a-jwt"),
            Some("eyJhbGciOiJFZERTQSJ9.e30.c2ln"),
        ] {
            let mut request = app
                .host(method.clone(), path)
                .header("Idempotency-Key", "k")
                .json(&json!({}));
            if let Some(token) = token {
                request = request.bearer_auth(token);
            }
            let reply = send(request).await;
            reply.expect_problem(401, "unauthorized");
            assert_eq!(
                reply.header("www-authenticate"),
                Some("Bearer"),
                "{method} {path}"
            );
        }
    }
    // A scheme other than Bearer is no token either.
    let basic = send(
        app.host(Method::GET, "/v1/cart")
            .header("Authorization", "Basic dXNlcjpwYXNz"),
    )
    .await;
    basic.expect_problem(401, "unauthorized");
    assert_eq!(app.product_rows().await, 0);
    assert_eq!(app.order_rows().await, 0);
}

async fn a_sign_out_is_refused_by_every_replica_within_a_second(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let replica = app.replica().await;
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Lamp", 2_500, 5).await);
    let alice = app.customer().await;
    let bob = app.customer().await;
    app.put_item(&alice, product, 1).await.expect(200);
    // Both replicas know the token (the second one synced too).
    assert!(
        eventually(Duration::from_secs(10), || async {
            replica.cart(&alice).await.status == 200
        })
        .await
    );

    app.logout(&alice).await.expect(204);
    let since = Instant::now();
    refused_everywhere_within_a_second(&[&app.api, &replica.api], &alice, since).await;

    app.checkout(&alice, Some("after-logout"), None)
        .await
        .expect_problem(401, "unauthorized");
    assert_eq!(app.order_rows().await, 0);
    // Other tokens are unaffected.
    replica.cart(&bob).await.expect(200);
    app.set_stock(&seller, product, 6).await.expect(200);
}

async fn a_password_change_or_deletion_is_refused_by_every_replica_within_a_second(
    backend: Backend,
) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let replica = app.replica().await;
    let alice = app.customer().await;
    let bob = app.customer().await;
    let carol = app.customer().await;
    for user in [&alice, &bob, &carol] {
        assert!(
            eventually(Duration::from_secs(10), || async {
                replica.cart(user).await.status == 200 && app.cart(user).await.status == 200
            })
            .await
        );
    }

    // A new password signs Alice out everywhere.
    send(
        app.client
            .patch(format!("{}/v1/users/me", app.account_url))
            .bearer_auth(&alice.token)
            .json(&json!({"password": "a-new-password-9", "current_password": shopeezy_testkit::PASSWORD})),
    )
    .await
    .expect(200);
    let since = Instant::now();
    refused_everywhere_within_a_second(&[&app.api, &replica.api], &alice, since).await;

    // Bob deletes his account.
    send(
        app.client
            .delete(format!("{}/v1/users/me", app.account_url))
            .bearer_auth(&bob.token),
    )
    .await
    .expect(204);
    let since = Instant::now();
    refused_everywhere_within_a_second(&[&replica.api, &app.api], &bob, since).await;

    app.cart(&carol).await.expect(200);
    replica.cart(&carol).await.expect(200);
}

async fn a_role_change_is_in_force_on_every_replica_within_a_second(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let replica = app.replica().await;
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Lamp", 2_500, 5).await);
    let promoted = app.customer().await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            replica.cart(&seller).await.status == 200
        })
        .await
    );

    // The admin takes the seller role away; the same token loses it on
    // every replica within a second.
    app.grant_role(&seller, "customer").await;
    let since = Instant::now();
    for host in [&app.api, &replica.api] {
        loop {
            let reply = host.set_stock(&seller, product, 0).await;
            if reply.status == 403 {
                reply.expect_problem(403, "forbidden");
                break;
            }
            reply.expect(200);
            assert!(since.elapsed() < WITHIN, "the old role is still in force");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // (It may have set the stock to 0 before the change reached a replica;
    // that is what it was allowed to do then.)
    app.create_product(
        &seller,
        json!({"sku": "late", "name": "Too late", "price": 1, "currency": "USD"}),
    )
    .await
    .expect_problem(403, "forbidden");
    replica
        .create_product(
            &seller,
            json!({"sku": "late", "name": "Too late", "price": 1, "currency": "USD"}),
        )
        .await
        .expect_problem(403, "forbidden");
    assert_eq!(app.product_rows().await, 1);
    // As a customer it can still shop.
    app.set_stock(&app.admin, product, 5).await.expect(200);
    app.put_item(&seller, product, 1).await.expect(200);

    // A promotion reaches the customer's existing token the same way.
    app.grant_role(&promoted, "seller").await;
    let since = Instant::now();
    for host in [&app.api, &replica.api] {
        loop {
            let reply = host
                .create_product(
                    &promoted,
                    json!({"sku": format!("sku-{}", Uuid::new_v4().simple()), "name": "New", "price": 1, "currency": "USD"}),
                )
                .await;
            if reply.status == 201 {
                break;
            }
            reply.expect_problem(403, "forbidden");
            assert!(since.elapsed() < WITHIN, "the new role is not in force");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn shoppers_keep_shopping_while_the_account_service_is_down(backend: Backend) {
    let Some(mut app) = spawn_app(backend).await else {
        return;
    };
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Lamp", 2_500, 50).await);
    let other = id_of(&app.product(&seller, "Mug", 900, 50).await);
    let alice = app.customer().await;
    let bob = app.customer().await;
    let carol = app.customer().await;
    app.put_item(&alice, product, 1).await.expect(200);
    app.put_item(&carol, product, 1).await.expect(200);
    // Bob signs out before the outage.
    app.logout(&bob).await.expect(204);
    refused_everywhere_within_a_second(&[&app.api], &bob, Instant::now()).await;

    app.stop_account().await;
    // The account service is gone: nobody can sign in…
    assert!(
        app.client
            .post(format!("{}/v1/auth/login", app.account_url))
            .json(&json!({"email": "x@example.com", "password": "whatever-1"}))
            .send()
            .await
            .is_err()
    );
    // …but Alice keeps viewing and editing her cart, and checks out.
    assert_eq!(app.cart_lines(&alice).await, vec![(product, 1)]);
    app.put_item(&alice, other, 2).await.expect(200);
    app.put_item(&alice, product, 3).await.expect(200);
    app.remove_item(&alice, other).await.expect(200);
    assert_eq!(app.cart_lines(&alice).await, vec![(product, 3)]);
    let order = app.place_order(&alice).await;
    app.get_order(&alice, id_of(&order)).await.expect(200);
    assert_eq!(app.stock_of(product).await, 47);
    // What was revoked before stays refused.
    app.cart(&bob).await.expect_problem(401, "unauthorized");
    app.checkout(&bob, Some("bob-while-down"), None)
        .await
        .expect_problem(401, "unauthorized");
    // The replica stays ready, and says on what.
    let ready = readyz(&app.api).await;
    ready.expect(200);
    assert_eq!(
        ready.body["checks"]["auth"]["status"], "ok",
        "{}",
        ready.body
    );
    assert!(
        ready.body["checks"]["auth"]["detail"]
            .as_str()
            .unwrap()
            .contains("trusted"),
        "{}",
        ready.body
    );

    // Back, on the same database: the host resumes its stream, and a new
    // revocation is in force within a second.
    app.start_account().await;
    assert!(
        eventually(Duration::from_secs(15), || async {
            readyz(&app.api).await.body["checks"]["auth"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("streamed"))
        })
        .await,
        "the host reconnects to the account service"
    );
    app.cart(&carol).await.expect(200);
    app.logout(&carol).await.expect(204);
    refused_everywhere_within_a_second(&[&app.api], &carol, Instant::now()).await;
    app.cart(&bob).await.expect_problem(401, "unauthorized");
    app.cart(&alice).await.expect(200);
}

async fn a_host_that_never_reached_the_account_service_fails_closed(backend: Backend) {
    let options = Options {
        auth_through_proxy: true,
        ..Options::default()
    };
    let Some(app) = spawn_app_with(backend, options).await else {
        return;
    };
    let proxy = app.auth_proxy.clone().unwrap();
    let seller = app.seller().await;
    let product = id_of(&app.product(&seller, "Lamp", 2_500, 5).await);
    let alice = app.customer().await;
    app.put_item(&alice, product, 1).await.expect(200);

    proxy.cut();
    // A replica started now has never had the revocations: it refuses to
    // guess, for a valid token too.
    let late = app.replica().await;
    let cart = late.cart(&alice).await;
    cart.expect_problem(503, "auth_unavailable");
    late.checkout(&alice, Some("never-synced"), None)
        .await
        .expect_problem(503, "auth_unavailable");
    late.set_stock(&seller, product, 0)
        .await
        .expect_problem(503, "auth_unavailable");
    let ready = readyz(&late.api).await;
    ready.expect(503);
    assert_eq!(ready.body["checks"]["auth"]["status"], "unavailable");
    // The public catalog needs no token.
    assert_eq!(late.stock_of(product).await, 5);
    // The replica that synced before keeps serving.
    app.cart(&alice).await.expect(200);
    assert_eq!(app.order_rows().await, 0);

    // Once the account service can be reached, the same token works.
    proxy.restore();
    let recovered = eventually(Duration::from_secs(15), || async {
        late.cart(&alice).await.status == 200
    })
    .await;
    assert!(
        recovered,
        "the late host syncs once it reaches the account service"
    );
    readyz(&late.api).await.expect(200);
    late.checkout(&alice, Some("after-recovery"), None)
        .await
        .expect(201);
}

/// A JWT signed with `key` (PKCS#8 PEM) over `claims`, with `kid`.
fn sign(key: &str, kid: Option<&str>, claims: &serde_json::Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ed_pem(key.as_bytes()).unwrap(),
    )
    .unwrap()
}

async fn forged_expired_and_foreign_tokens_are_refused(backend: Backend) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

    let Some(mut config) = StackConfig::new(backend).await else {
        return;
    };
    let real_key = new_signing_key_pem();
    config.account.jwt_private_key = Some(real_key.clone());
    let stack = config.start().await;
    let api = Api {
        accounts: stack.accounts.clone(),
        host_url: stack.hosts[0].url.clone(),
    };
    let alice = api.customer().await;
    api.cart(&alice).await.expect(200);
    let kid = jsonwebtoken::decode_header(&alice.token)
        .unwrap()
        .kid
        .unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = |iat: i64, exp: i64, aud: &str| {
        json!({
            "sub": alice.id, "jti": Uuid::now_v7(), "iat": iat, "exp": exp,
            "iss": "shopeezy-account", "aud": aud, "role": "admin",
        })
    };
    let as_token = |token: String| User {
        id: alice.id,
        token,
    };
    let admin_orders = |token: String| {
        let user = as_token(token);
        let api = api.clone();
        async move { api.admin_orders(&user, "").await }
    };

    // Control: the real key and right claims pass (so the refusals below
    // are about what is wrong with each token).
    admin_orders(sign(
        &real_key,
        Some(&kid),
        &claims(now, now + 600, "shopeezy"),
    ))
    .await
    .expect(200);

    let other_key = new_signing_key_pem();
    let refused = [
        (
            "another key, the real kid",
            sign(&other_key, Some(&kid), &claims(now, now + 600, "shopeezy")),
        ),
        (
            "another key, an unknown kid",
            sign(
                &other_key,
                Some("no-such-key"),
                &claims(now, now + 600, "shopeezy"),
            ),
        ),
        (
            "another key, no kid",
            sign(&other_key, None, &claims(now, now + 600, "shopeezy")),
        ),
        (
            "expired",
            sign(
                &real_key,
                Some(&kid),
                &claims(now - 700, now - 100, "shopeezy"),
            ),
        ),
        (
            "another audience",
            sign(&real_key, Some(&kid), &claims(now, now + 600, "elsewhere")),
        ),
        (
            "not valid yet",
            sign(
                &real_key,
                Some(&kid),
                &json!({
                    "sub": alice.id, "jti": Uuid::now_v7(), "iat": now, "exp": now + 600,
                    "nbf": now + 300, "iss": "shopeezy-account", "aud": "shopeezy", "role": "admin",
                }),
            ),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                B64.encode(br#"{"alg":"none","typ":"JWT"}"#),
                B64.encode(claims(now, now + 600, "shopeezy").to_string())
            ),
        ),
        (
            "alg HS256 keyed with the kid",
            jsonwebtoken::encode(
                &Header {
                    kid: Some(kid.clone()),
                    ..Header::new(Algorithm::HS256)
                },
                &claims(now, now + 600, "shopeezy"),
                &EncodingKey::from_secret(kid.as_bytes()),
            )
            .unwrap(),
        ),
        ("the real token with its role claim changed", {
            let mut parts: Vec<String> = alice.token.split('.').map(str::to_owned).collect();
            let mut body: serde_json::Value =
                serde_json::from_slice(&B64.decode(&parts[1]).unwrap()).unwrap();
            body["role"] = json!("admin");
            parts[1] = B64.encode(body.to_string());
            parts.join(".")
        }),
    ];
    for (what, token) in refused {
        let reply = admin_orders(token).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        reply.expect_problem(401, "unauthorized");
    }
    // Alice's own token still works as hers (a customer's).
    api.cart(&alice).await.expect(200);
    api.admin_orders(&alice, "")
        .await
        .expect_problem(403, "forbidden");
}
