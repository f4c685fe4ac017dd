//! The host's errors, answered as problem+json.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shopeezy_common::Problem;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An answer the API documents (4xx, or a 503 with its own code).
    #[error("{0}")]
    Problem(#[from] Problem),
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A concurrent checkout took what this one's snapshot saw; retried.
    #[error("lost a race with a concurrent checkout")]
    Contention,
    /// Anything else that should not happen.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    /// 401: no usable token.
    pub fn unauthenticated(why: &str) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED, "unauthorized", why)
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
            .into()
    }

    /// 403: the caller's role may not do this.
    pub fn forbidden(detail: &str) -> Self {
        Problem::new(StatusCode::FORBIDDEN, "forbidden", detail).into()
    }

    /// 404: no such thing, or not the caller's to see.
    pub fn not_found(what: &str) -> Self {
        Problem::not_found(what).into()
    }

    /// 422 `validation_failed` naming the field.
    pub fn invalid(field: &str, detail: impl Into<String>) -> Self {
        let detail = detail.into();
        Problem::unprocessable("validation_failed", format!("{field} {detail}"))
            .with("field", field)
            .into()
    }

    /// 409 with a code.
    pub fn conflict(code: &str, detail: impl Into<String>) -> Self {
        Problem::new(StatusCode::CONFLICT, code, detail).into()
    }

    /// The problem answer for this error.
    pub fn problem(&self) -> Problem {
        match self {
            Self::Problem(p) => p.clone(),
            Self::Database(e) => shopeezy_common::db::failure_problem(e),
            Self::Contention | Self::Internal(_) => Problem::internal(),
        }
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let problem = self.problem();
        if problem.status >= 500 {
            // The cause goes to the log, never to the client.
            tracing::error!(error = %self, "request failed");
        }
        problem.into_response()
    }
}

/// A result with the host's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
