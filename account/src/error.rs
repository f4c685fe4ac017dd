//! The account service's errors, answered as problem+json on REST and as
//! status codes on gRPC.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shopeezy_common::Problem;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No token, or one that is malformed, badly signed, expired or revoked.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Login with an unknown user or a wrong password (the same answer for both).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The caller's role may not do this.
    #[error("this needs the {0} role")]
    Forbidden(&'static str),
    /// The caller may not do this for another reason, with its code.
    #[error("{1}")]
    Refused(&'static str, &'static str),
    /// No such thing (or not the caller's to see).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A unique value is taken: `email_taken` or `username_taken`.
    #[error("{1}")]
    Conflict(&'static str, &'static str),
    /// A field failed validation.
    #[error("{field}: {detail}")]
    Invalid {
        /// The JSON member at fault.
        field: &'static str,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// Too many failed logins for this account from this address, or from
    /// this address; retry after this many seconds.
    #[error("too many failed logins")]
    Throttled(u64),
    /// Redis (revocation, throttling) could not be reached: fail closed.
    #[error("token revocation store unavailable: {0}")]
    RevocationUnavailable(String),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A problem made elsewhere (paging, extractors), passed on as it is.
    #[error("{0}")]
    Problem(#[from] Problem),
    /// Anything else that should not happen.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// A validation failure of one field.
    pub fn invalid(field: &'static str, detail: &'static str) -> Self {
        Self::Invalid { field, detail }
    }

    /// The problem answer for this error.
    pub fn problem(&self) -> Problem {
        match self {
            Self::Unauthenticated(why) => {
                Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", *why)
                    .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
            }
            Self::InvalidCredentials => Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "the login or the password is wrong",
            ),
            Self::Forbidden(role) => Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("this needs the {role} role"),
            ),
            Self::Refused(code, detail) => Problem::new(StatusCode::FORBIDDEN, code, *detail),
            Self::NotFound(what) => Problem::not_found(what),
            Self::Conflict(code, detail) => Problem::new(StatusCode::CONFLICT, code, *detail),
            Self::Invalid { field, detail } => {
                Problem::unprocessable("validation_failed", format!("{field} {detail}"))
                    .with("field", field)
            }
            Self::Throttled(secs) => Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_attempts",
                format!("too many failed logins; try again in {secs} s"),
            )
            .with("retry_after", secs)
            .with_header(header::RETRY_AFTER, HeaderValue::from(*secs)),
            Self::RevocationUnavailable(_) => Problem::unavailable(
                "revocation_unavailable",
                "tokens cannot be checked right now; try again shortly",
            ),
            Self::Database(e) => shopeezy_common::db::failure_problem(e),
            Self::Problem(problem) => {
                // Made elsewhere, perhaps from the caller's input.
                let mut problem = problem.clone();
                problem.detail =
                    shopeezy_common::extract::excerpt(&problem.detail, MAX_DETAIL_BYTES);
                problem
            }
            Self::Internal(_) => Problem::internal(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let problem = self.problem();
        if problem.status >= 500 {
            // The detail goes to the log, never to the client.
            tracing::error!(error = %self, "request failed");
        }
        problem.into_response()
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        let message = error.problem().detail;
        match error {
            Error::Unauthenticated(_) | Error::InvalidCredentials => Self::unauthenticated(message),
            Error::Forbidden(_) | Error::Refused(..) => Self::permission_denied(message),
            Error::NotFound(_) => Self::not_found(message),
            Error::Conflict(..) => Self::already_exists(message),
            Error::Invalid { .. } => Self::invalid_argument(message),
            Error::Throttled(_) => Self::resource_exhausted(message),
            Error::RevocationUnavailable(_) => Self::unavailable(message),
            Error::Database(ref e) if shopeezy_common::db::fault(e).is_some() => {
                Self::unavailable(message)
            }
            Error::Problem(ref p) if p.status < 500 => Self::invalid_argument(message),
            Error::Database(_) | Error::Internal(_) | Error::Problem(_) => {
                tracing::error!(error = %error, "gRPC call failed");
                Self::internal(message)
            }
        }
    }
}

/// A result with the service's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The most characters of a caller's input an error message quotes.
pub const MAX_QUOTED_CHARS: usize = 64;

/// The most bytes of a detail passed on from elsewhere.
const MAX_DETAIL_BYTES: usize = 256;

/// The caller's `input` as an error message may quote it: in Rust string
/// quoting, cut after [`MAX_QUOTED_CHARS`] characters with `…`, so a message
/// never grows with what the caller sent.
pub fn quote(input: &str) -> String {
    match cut(input, MAX_QUOTED_CHARS) {
        Some(prefix) => format!("{prefix:?}…"),
        None => format!("{input:?}"),
    }
}

/// The first `max_chars` characters of `text`, when it has more.
fn cut(text: &str, max_chars: usize) -> Option<&str> {
    text.char_indices()
        .nth(max_chars)
        .map(|(boundary, _)| &text[..boundary])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_are_short_and_cut_on_a_char_boundary() {
        assert_eq!(quote("abc"), r#""abc""#);
        let long = "é".repeat(100_000);
        let quoted = quote(&long);
        assert_eq!(quoted, format!("{:?}…", "é".repeat(MAX_QUOTED_CHARS)));
        assert_eq!(
            quote(&"x".repeat(MAX_QUOTED_CHARS)).chars().count(),
            MAX_QUOTED_CHARS + 2
        );
        // Control characters are escaped, not sent raw.
        assert_eq!(quote("a\0b\n"), r#""a\0b\n""#);
        assert_eq!(quote("a\u{0}b"), r#""a\0b""#);
    }

    #[test]
    fn passed_on_details_are_bounded() {
        let problem = shopeezy_common::Problem::bad_request("invalid_body", "x".repeat(10_000));
        let detail = Error::Problem(problem).problem().detail;
        assert_eq!(detail.chars().count(), MAX_DETAIL_BYTES + 1);
        assert!(detail.ends_with('…'));
    }
}
