//! Extractors whose rejections are problem+json answers, so malformed input
//! never reaches a handler and never gets axum's plain-text errors.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Problem;

/// A JSON body (or answer). Wrong syntax is 400 `malformed_json`, wrong types,
/// unknown fields or a NUL character in a string 422 `invalid_body`, a
/// missing content type 415, an oversized body 413.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

impl<T, S> FromRequest<S> for Json<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(req.headers()) {
            return Err(json_problem(JsonRejection::MissingJsonContentType(
                Default::default(),
            )));
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| body_problem(e.status(), e.body_text()))?;
        refuse_nul_in_json(&bytes)?;
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_problem(rejection)),
        }
    }
}

/// Whether the request says its body is JSON (`application/json` or any
/// `application/…+json`), as axum's own extractor requires.
fn json_content_type(headers: &axum::http::HeaderMap) -> bool {
    let Some(value) = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || subtype.to_ascii_lowercase().ends_with("+json"))
}

/// The problem for a text holding the NUL character: no database stores it
/// (PostgreSQL refuses it in text), so no input may carry it.
fn nul_problem(status: StatusCode, code: &str) -> Problem {
    Problem::new(
        status,
        code,
        "text must not contain the NUL character (U+0000)",
    )
}

/// Refuses a JSON document with a NUL character in any string (`\u0000`;
/// a raw NUL byte is not valid JSON and fails to parse anyway). Every JSON
/// body goes through here, so no handler has to remember it.
pub fn refuse_nul_in_json(bytes: &[u8]) -> Result<(), Problem> {
    let mut i = 0;
    while let Some(offset) = bytes[i..].iter().position(|&b| b == b'\\') {
        let at = i + offset;
        match bytes.get(at + 1) {
            Some(b'u') if bytes.get(at + 2..at + 6) == Some(&b"0000"[..]) => {
                return Err(nul_problem(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_body",
                ));
            }
            // Skip the escaped character, so `\\u0000` (a backslash, then
            // "u0000") is not taken for a NUL.
            Some(_) => i = at + 2,
            None => break,
        }
    }
    Ok(())
}

/// Whether a percent-encoded part of a URL decodes to a NUL somewhere.
fn has_encoded_nul(raw: &str) -> bool {
    raw.contains("%00")
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// At most `max` bytes of `text` (cut on a character boundary, with "…"):
/// a rejection's text quotes the input, which may be huge.
pub fn excerpt(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The longest detail a rejection of the input gives.
const MAX_DETAIL: usize = 256;

fn json_problem(rejection: JsonRejection) -> Problem {
    match rejection {
        JsonRejection::JsonDataError(e) => Problem::unprocessable(
            "invalid_body",
            excerpt(
                &e.body_text().replace(
                    "Failed to deserialize the JSON body into the target type: ",
                    "",
                ),
                MAX_DETAIL,
            ),
        ),
        JsonRejection::JsonSyntaxError(e) => {
            Problem::bad_request("malformed_json", excerpt(&e.body_text(), MAX_DETAIL))
        }
        JsonRejection::MissingJsonContentType(_) => Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "expected a body with Content-Type: application/json",
        ),
        JsonRejection::BytesRejection(e) => body_problem(e.status(), e.body_text()),
        other => body_problem(other.status(), other.body_text()),
    }
}

/// The problem for a body that could not be read (too large, cut short).
pub fn body_problem(status: StatusCode, text: String) -> Problem {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        Problem::new(
            status,
            "body_too_large",
            "the request body is larger than this endpoint accepts",
        )
    } else {
        Problem::new(status, "invalid_body", excerpt(&text, MAX_DETAIL))
    }
}

/// Path parameters; a value of the wrong form (e.g. an id that is not a UUID)
/// is 400 `invalid_path`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if has_encoded_nul(parts.uri.path()) {
            return Err(nul_problem(StatusCode::BAD_REQUEST, "invalid_path"));
        }
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(rejection) => Err(path_problem(rejection)),
        }
    }
}

fn path_problem(rejection: PathRejection) -> Problem {
    Problem::bad_request("invalid_path", excerpt(&rejection.body_text(), MAX_DETAIL))
}

/// A query string; a bad one is 400 `invalid_query`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.query().is_some_and(has_encoded_nul) {
            return Err(nul_problem(StatusCode::BAD_REQUEST, "invalid_query"));
        }
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_problem(rejection)),
        }
    }
}

fn query_problem(rejection: QueryRejection) -> Problem {
    Problem::bad_request("invalid_query", excerpt(&rejection.body_text(), MAX_DETAIL))
}

/// The token of an `Authorization: Bearer …` header, or why there is none.
pub fn bearer_token(parts: &Parts) -> Result<&str, &'static str> {
    let value = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or("an Authorization: Bearer token is required")?;
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is malformed")?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err("the Authorization header must be 'Bearer <token>'"),
    }
}

/// A raw body whose rejection (too large, cut short) is a problem answer.
#[derive(Debug, Clone, Default)]
pub struct RawBody(pub axum::body::Bytes);

impl<S> FromRequest<S> for RawBody
where
    S: Send + Sync,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        axum::body::Bytes::from_request(req, state)
            .await
            .map(Self)
            .map_err(|e| body_problem(e.status(), e.body_text()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_is_short_and_cut_between_characters() {
        assert_eq!(excerpt("short", 10), "short");
        assert_eq!(excerpt("ééé", 3), "é…");
        assert!(excerpt(&"x".repeat(100_000), MAX_DETAIL).len() <= MAX_DETAIL + 3);
    }

    #[test]
    fn a_nul_escape_is_refused_and_an_escaped_backslash_is_not() {
        assert!(refuse_nul_in_json(br#"{"q":"a\u0000b"}"#).is_err());
        assert!(refuse_nul_in_json(br#"{"q":"\\u0000"}"#).is_ok());
        assert!(refuse_nul_in_json(br#"{"q":"\\\u0000"}"#).is_err());
        assert!(refuse_nul_in_json(br#"{"q":"\u00001"}"#).is_err());
        assert!(refuse_nul_in_json(br#"{"q":"\u0001 \n \""}"#).is_ok());
        assert!(refuse_nul_in_json(br#"{"q":"trailing\"#).is_ok());
    }
}
