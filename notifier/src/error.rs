//! The notifier's errors, answered as problem+json.

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

    /// The problem answer for this error.
    pub fn problem(&self) -> Problem {
        match self {
            Self::Problem(p) => p.clone(),
            Self::Database(e) => shopeezy_common::db::failure_problem(e),
            Self::Internal(_) => Problem::internal(),
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

/// A result with the notifier's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
