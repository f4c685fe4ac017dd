//! Answers read whole, and the one strict RFC 9457 problem check.

use reqwest::header::HeaderMap;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::Value;
use shopeezy_common::problem::PROBLEM_JSON;
use uuid::Uuid;

/// One HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as JSON (`Null` when empty, a string when not JSON).
    pub body: Value,
}

impl Reply {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The problem's `code` (empty when there is none).
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// The `id` member of the body.
    #[track_caller]
    pub fn id(&self) -> Uuid {
        id_of(&self.body)
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        self
    }

    /// Asserts an RFC 9457 problem answer with this status and `code` (see
    /// [`check_problem`]).
    #[track_caller]
    pub fn expect_problem(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        check_problem(
            self.status,
            self.header("content-type"),
            &self.body,
            Some(code),
        );
        self
    }

    /// Asserts a 4xx problem answer with some `code` (the status is the
    /// service's choice).
    #[track_caller]
    pub fn expect_client_error(&self) -> &Self {
        assert!(
            self.status.is_client_error(),
            "expected a 4xx, got {}: {}",
            self.status,
            self.body
        );
        check_problem(self.status, self.header("content-type"), &self.body, None);
        self
    }
}

/// Sends a request and reads its answer whole.
pub async fn send(request: RequestBuilder) -> Reply {
    let response = request
        .send()
        .await
        .expect("the request reaches the server");
    read(response).await
}

/// Reads an answer whole.
pub async fn read(response: Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("the answer is read whole");
    Reply {
        status,
        headers,
        body: body_of(&bytes),
    }
}

/// A body as JSON: `Null` when empty, a string when not JSON.
pub fn body_of(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
    }
}

/// The `id` member of a JSON object, as a UUID.
#[track_caller]
pub fn id_of(value: &Value) -> Uuid {
    value["id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(|| panic!("no id in {value}"))
}

/// Asserts that an answer of `status` is an RFC 9457 problem as every
/// Shopeezy service writes it: media type exactly `application/problem+json`;
/// members `type`, `title`, `status`, `detail` and `code`; `status` the
/// answer's status; `title` its reason phrase; `type` the URI named after
/// `code`; `detail` and `code` not empty; `code` the one given, if any.
#[track_caller]
pub fn check_problem(
    status: StatusCode,
    content_type: Option<&str>,
    body: &Value,
    code: Option<&str>,
) {
    assert_eq!(
        content_type,
        Some(PROBLEM_JSON),
        "a problem's media type; status {status}, body: {body}"
    );
    assert!(body.is_object(), "a problem is a JSON object: {body}");
    let actual_code = body["code"].as_str().unwrap_or_default();
    assert!(
        !actual_code.is_empty(),
        "problem member code missing: {body}"
    );
    if let Some(code) = code {
        assert_eq!(
            actual_code, code,
            "problem code; status {status}, body: {body}"
        );
    }
    assert_eq!(
        body["status"].as_u64(),
        Some(u64::from(status.as_u16())),
        "problem member status is not the answer's {status}: {body}"
    );
    assert_eq!(
        body["title"].as_str(),
        Some(status.canonical_reason().unwrap_or("Error")),
        "problem member title is not the reason phrase of {status}: {body}"
    );
    assert_eq!(
        body["type"].as_str().map(str::to_owned),
        Some(format!(
            "https://shopeezy.dev/problems/{}",
            actual_code.replace('_', "-")
        )),
        "problem member type is not named after the code: {body}"
    );
    assert!(
        body["detail"].as_str().is_some_and(|s| !s.is_empty()),
        "problem member detail missing: {body}"
    );
}

/// Asserts that `response` is a problem answer of `status` with `code` (see
/// [`check_problem`]); its body.
pub async fn assert_problem(response: Response, status: StatusCode, code: &str) -> Value {
    let reply = read(response).await;
    assert_eq!(
        reply.status, status,
        "expected {status} {code}, got: {}",
        reply.body
    );
    check_problem(
        reply.status,
        reply.header("content-type"),
        &reply.body,
        Some(code),
    );
    reply.body
}
