//! The merchant console (`/console/`) and the storefront (`/shop/`): static
//! pages and scripts compiled into the binary, which run in the browser and
//! call the public REST API with the signed-in user's own token. They hold
//! no privilege of their own: what a page may show or change is what the API
//! answers that token, checked where it always is.
//!
//! Every file is served from memory with an `ETag` (a content hash, so a
//! browser revalidates cheaply and never runs a stale script after an
//! upgrade). Pages carry a content security policy that lets them load only
//! this host's own files and connect only to this host and the account
//! service (where people sign in): no inline script, no other origin, no
//! framing. Nothing is fetched from elsewhere, so both work offline.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};

/// One file of the console, as served.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

/// An [`Asset`] of `host/console/`, compiled in.
macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../../console/", $name)),
        }
    };
}

/// The pages' files, by the name they are served under.
const ASSETS: &[Asset] = &[
    asset!("console.html", "text/html; charset=utf-8"),
    asset!("shop.html", "text/html; charset=utf-8"),
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("console.js", "text/javascript; charset=utf-8"),
    asset!("shop.js", "text/javascript; charset=utf-8"),
    asset!("icon.svg", "image/svg+xml"),
];

/// What the pages are served with: each file's ETag, the policy and the
/// settings the scripts read.
struct Console {
    etags: Vec<HeaderValue>,
    policy: HeaderValue,
    settings: String,
}

/// The console's and storefront's routes. `account_url` is the account
/// service's origin as browsers reach it (already checked to be a bare
/// origin by the configuration).
pub fn router(account_url: &str) -> Router {
    let etags = ASSETS
        .iter()
        .map(|a| {
            let digest = Sha256::digest(a.body);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            let tag = format!("\"{hex}\"");
            HeaderValue::from_str(&tag).expect("hex is a header value")
        })
        .collect();
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
         connect-src 'self' {account_url}; form-action 'none'; base-uri 'none'; \
         frame-ancestors 'none'"
    );
    let console = Arc::new(Console {
        etags,
        // The origin was checked by the configuration (no `;`, space or
        // control character), so the policy is a header value.
        policy: HeaderValue::from_str(&policy).expect("a checked origin makes a header value"),
        settings: serde_json::json!({
            "account_url": account_url,
            "currency_digits": currency_digits(),
        })
        .to_string(),
    });
    Router::new()
        .route("/", get(|| async { Redirect::to("/shop/") }))
        .route("/console", get(|| async { Redirect::permanent("/console/") }))
        .route("/shop", get(|| async { Redirect::permanent("/shop/") }))
        .route(
            "/console/",
            get(|State(c): State<Arc<Console>>, h: HeaderMap| async move {
                c.serve("console.html", &h)
            }),
        )
        .route(
            "/shop/",
            get(|State(c): State<Arc<Console>>, h: HeaderMap| async move {
                c.serve("shop.html", &h)
            }),
        )
        .route(
            "/console/settings.json",
            get(|State(c): State<Arc<Console>>| async move {
                (
                    [
                        (header::CONTENT_TYPE, "application/json"),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    c.settings.clone(),
                )
            }),
        )
        .route(
            "/assets/{name}",
            get(
                |State(c): State<Arc<Console>>, Path(name): Path<String>, h: HeaderMap| async move {
                    // The pages live at their own addresses only.
                    if name.ends_with(".html") {
                        return shopeezy_common::Problem::not_found("asset").into_response();
                    }
                    c.serve(&name, &h)
                },
            ),
        )
        .with_state(console)
}

impl Console {
    /// The file `name` (a page gets the security headers), or 304 when the
    /// browser's copy is current, or the 404 problem.
    fn serve(&self, name: &str, request: &HeaderMap) -> Response {
        let Some((i, asset)) = ASSETS.iter().enumerate().find(|(_, a)| a.name == name) else {
            return shopeezy_common::Problem::not_found("asset").into_response();
        };
        let etag = &self.etags[i];
        // `If-None-Match` may list several tags, weak ones (`W/"…"`) too:
        // a byte-identical file matches either.
        let fresh = request
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|list| {
                list.split(',')
                    .map(|t| t.trim().trim_start_matches("W/"))
                    .any(|t| t == "*" || t.as_bytes() == etag.as_bytes())
            });
        let mut response = if fresh {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            asset.body.into_response()
        };
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        headers.insert(header::ETAG, etag.clone());
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if asset.content_type.starts_with("text/html") {
            headers.insert(header::CONTENT_SECURITY_POLICY, self.policy.clone());
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
            headers.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
        }
        response
    }
}

/// Digits after the point of every active ISO 4217 currency, as the
/// catalog's amounts are counted (`iso_currency`, the same table that
/// validates a product's currency): the browsers' own tables differ for a
/// few currencies (IQD, HUF…), and a price shown 100 times off is worse
/// than none. All three-letter codes are tried once, at start-up.
fn currency_digits() -> serde_json::Map<String, serde_json::Value> {
    let mut digits = serde_json::Map::new();
    for a in b'A'..=b'Z' {
        for b in b'A'..=b'Z' {
            for c in b'A'..=b'Z' {
                let code = String::from_utf8_lossy(&[a, b, c]).into_owned();
                if let Some(exponent) =
                    iso_currency::Currency::from_code(&code).and_then(|c| c.exponent())
                {
                    digits.insert(code, exponent.into());
                }
            }
        }
    }
    digits
}
