//! CORS: the merchant console is served by the host, another origin, and
//! signs in from the browser by calling this service's REST API.
//!
//! Any origin is allowed by default. That is safe here because the API
//! authenticates with bearer tokens the caller sends explicitly in
//! `Authorization`, never with cookies or other ambient credentials: a page
//! of another origin can only act with a token it already holds, and
//! `Access-Control-Allow-Credentials` stays off, so a browser never attaches
//! any credential of its own to a cross-origin request. A deployment that
//! wants only its own console lists its origins
//! (`SHOPEEZY_ACCOUNT_CORS_ORIGINS`).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use axum::http::{HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use shopeezy_common::http::REQUEST_ID;
use shopeezy_common::origin::{InvalidOrigin, parse_origin};

/// How long a browser may cache a preflight's answer.
const MAX_AGE: Duration = Duration::from_secs(600);

/// The origins allowed to call the API from a browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsOrigins {
    /// Any origin (`*`).
    Any,
    /// Exactly these origins (`scheme://host[:port]`, lowercase).
    List(Vec<HeaderValue>),
}

/// An origin list that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}; give `*` or a comma-separated list of origins like http://127.0.0.1:8080")]
pub struct InvalidOrigins(#[from] InvalidOrigin);

impl FromStr for CorsOrigins {
    type Err = InvalidOrigins;

    /// `*`, or a comma-separated list of exact origins.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim() == "*" {
            return Ok(Self::Any);
        }
        s.split(',')
            .map(|origin| {
                let origin = parse_origin(origin.trim())?;
                // An origin holds only header-safe characters.
                HeaderValue::from_str(&origin).map_err(|_| InvalidOrigin {
                    origin,
                    why: "it is not a valid header value",
                })
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self::List)
            .map_err(InvalidOrigins)
    }
}

impl fmt::Display for CorsOrigins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::List(origins) => {
                let origins: Vec<&str> = origins.iter().filter_map(|o| o.to_str().ok()).collect();
                f.write_str(&origins.join(","))
            }
        }
    }
}

/// The CORS layer for `origins`: methods GET, POST, PUT, PATCH and DELETE;
/// request headers `authorization`, `content-type` and `x-request-id`;
/// `retry-after`, `location` and `x-request-id` readable by the page;
/// preflights cached 10 minutes; never credentials (see the module's docs).
pub fn layer(origins: &CorsOrigins) -> CorsLayer {
    let allow_origin = match origins {
        CorsOrigins::Any => AllowOrigin::any(),
        CorsOrigins::List(list) => AllowOrigin::list(list.iter().cloned()),
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE, REQUEST_ID])
        .expose_headers([header::RETRY_AFTER, header::LOCATION, REQUEST_ID])
        .allow_credentials(false)
        .max_age(MAX_AGE)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn parses_any_and_lists() {
        assert_eq!("*".parse::<CorsOrigins>(), Ok(CorsOrigins::Any));
        let list: CorsOrigins = "http://127.0.0.1:8080, HTTPS://Console.Example.com"
            .parse()
            .unwrap();
        assert_eq!(
            list.to_string(),
            "http://127.0.0.1:8080,https://console.example.com"
        );
    }

    #[test]
    fn refuses_what_a_browser_never_sends() {
        for bad in [
            "",
            "http://a,",
            "127.0.0.1:8080",
            "http://a/",
            "http://a/console",
            "http://a?x",
            "ftp://a",
            "http://u@a",
            "http://",
            "http://a, *",
            "http://a b",
        ] {
            let refused = bad.parse::<CorsOrigins>();
            assert!(refused.is_err(), "{bad:?} was accepted: {refused:?}");
        }
        let message = "http://a/".parse::<CorsOrigins>().unwrap_err().to_string();
        assert!(message.contains("\"http://a/\""), "{message}");
    }
}
