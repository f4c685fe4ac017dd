//! CORS, as a browser page of another origin (the host's merchant console)
//! meets it: the preflight of a sign-in succeeds with the allow headers,
//! the real requests carry `Access-Control-Allow-Origin`, never credentials,
//! and a list of origins refuses every other origin. The service's
//! behaviour does not depend on the backend, so the embedded one serves.

use reqwest::header::{
    ACCESS_CONTROL_ALLOW_CREDENTIALS, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE,
    ACCESS_CONTROL_REQUEST_HEADERS, ACCESS_CONTROL_REQUEST_METHOD, ORIGIN,
};
use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use shopeezy_account::Config;

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};

const CONSOLE: &str = "http://127.0.0.1:8080";

fn header<'a>(response: &'a Response, name: &reqwest::header::HeaderName) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The preflight a browser sends before a JSON `POST` to `path` from `origin`.
async fn preflight(app: &TestApp, path: &str, origin: &str, method: &str) -> Response {
    app.client
        .request(Method::OPTIONS, app.url(path))
        .header(ORIGIN, origin)
        .header(ACCESS_CONTROL_REQUEST_METHOD, method)
        .header(ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
        .send()
        .await
        .unwrap()
}

/// A sign-in from a page of `origin`; the response.
async fn login_from(app: &TestApp, origin: &str, email: &str, password: &str) -> Response {
    app.client
        .post(app.url("/v1/auth/login"))
        .header(ORIGIN, origin)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_page_of_any_origin_signs_in_by_default() {
    let Some(app) = spawn_app(Backend::Embedded).await else {
        return;
    };
    let reply = preflight(&app, "/v1/auth/login", CONSOLE, "POST").await;
    assert!(
        reply.status().is_success(),
        "the preflight succeeds, not 405: {}",
        reply.status()
    );
    assert_eq!(header(&reply, &ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
    let methods = header(&reply, &ACCESS_CONTROL_ALLOW_METHODS).unwrap_or_default();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
        assert!(methods.contains(method), "{method} in {methods:?}");
    }
    let headers = header(&reply, &ACCESS_CONTROL_ALLOW_HEADERS)
        .unwrap_or_default()
        .to_ascii_lowercase();
    for name in ["authorization", "content-type", "x-request-id"] {
        assert!(headers.contains(name), "{name} in {headers:?}");
    }
    assert_eq!(header(&reply, &ACCESS_CONTROL_MAX_AGE), Some("600"));
    assert_eq!(
        header(&reply, &ACCESS_CONTROL_ALLOW_CREDENTIALS),
        None,
        "never credentials"
    );

    // The preflights of the console's other calls, on routes that have no
    // OPTIONS and answer other methods 405.
    for (path, method) in [
        ("/v1/auth/register", "POST"),
        ("/v1/users/me", "GET"),
        ("/v1/auth/logout", "POST"),
    ] {
        let reply = preflight(&app, path, "https://console.example.com", method).await;
        assert!(reply.status().is_success(), "{path}: {}", reply.status());
        assert_eq!(header(&reply, &ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
    }

    // The sign-in itself, then `me` with the bearer token it gave.
    let user = app.register_user("console").await;
    let (email, password) = (user.email.as_str(), user.password.as_str());
    let reply = login_from(&app, CONSOLE, email, password).await;
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(header(&reply, &ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
    let exposed = header(&reply, &ACCESS_CONTROL_EXPOSE_HEADERS)
        .unwrap_or_default()
        .to_ascii_lowercase();
    for name in ["retry-after", "location", "x-request-id"] {
        assert!(exposed.contains(name), "{name} in {exposed:?}");
    }
    let token = reply.json::<Value>().await.unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let me = app
        .client
        .get(app.url("/v1/users/me"))
        .header(ORIGIN, CONSOLE)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(header(&me, &ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));

    // A problem answer is readable by the page too (a wrong password).
    let reply = login_from(&app, CONSOLE, email, "not-the-password").await;
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(header(&reply, &ACCESS_CONTROL_ALLOW_ORIGIN), Some("*"));
}

fn console_only(config: &mut Config) {
    config.cors_origins = "http://127.0.0.1:8080, https://console.example.com"
        .parse()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_list_of_origins_refuses_every_other() {
    let Some(app) = spawn_app_with(Backend::Embedded, console_only).await else {
        return;
    };
    for origin in [CONSOLE, "https://console.example.com"] {
        let reply = preflight(&app, "/v1/auth/login", origin, "POST").await;
        assert!(reply.status().is_success(), "{origin}: {}", reply.status());
        assert_eq!(header(&reply, &ACCESS_CONTROL_ALLOW_ORIGIN), Some(origin));
    }

    let foreign = "https://evil.example.com";
    let reply = preflight(&app, "/v1/auth/login", foreign, "POST").await;
    assert_eq!(
        header(&reply, &ACCESS_CONTROL_ALLOW_ORIGIN),
        None,
        "the browser is not allowed to send it"
    );
    let user = app.register_user("console").await;
    let (email, password) = (user.email.as_str(), user.password.as_str());
    let reply = login_from(&app, foreign, email, password).await;
    assert_eq!(
        header(&reply, &ACCESS_CONTROL_ALLOW_ORIGIN),
        None,
        "the page may not read the answer"
    );
    let reply = login_from(&app, CONSOLE, email, password).await;
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(header(&reply, &ACCESS_CONTROL_ALLOW_ORIGIN), Some(CONSOLE));
}

#[test]
fn an_invalid_origin_stops_the_start_with_the_reason() {
    let refused = Config::try_parse_args([
        "shopeezy-account",
        "--cors-origins",
        "http://127.0.0.1:8080,console.example.com",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        refused.contains("console.example.com") && refused.contains("no scheme"),
        "{refused}"
    );
    let default = Config::try_parse_args(["shopeezy-account"]).unwrap();
    assert_eq!(default.cors_origins.to_string(), "*");
}
