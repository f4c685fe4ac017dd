//! Who is calling: as in the host, every bearer token is checked by the
//! account service over gRPC (`ValidateToken`) on one shared channel, nothing
//! cached; when the account service cannot be reached the request is
//! answered 503 `auth_unavailable`, never let through.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use shopeezy_common::Problem;
use shopeezy_proto::client::{CheckError, TokenChecker};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::startup::AppState;

/// A signed-in caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user's id.
    pub id: Uuid,
}

/// The account service's `AuthService`, on one shared channel.
#[derive(Debug, Clone)]
pub struct AuthClient {
    checker: TokenChecker,
}

impl AuthClient {
    /// A client of `url` (`http://host:port`); it connects lazily and
    /// reconnects by itself.
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            checker: TokenChecker::new(url, timeout)?,
        })
    }

    /// The caller a token belongs to.
    pub async fn validate(&self, token: &str) -> Result<Caller> {
        match self.checker.validate(token).await {
            Ok(reply) => {
                let id = Uuid::parse_str(&reply.user_id).map_err(|e| Error::Internal(e.into()))?;
                Ok(Caller { id })
            }
            Err(CheckError::Invalid(why)) => Err(Error::unauthenticated(&why)),
            Err(CheckError::Unavailable(why)) => {
                tracing::warn!(reason = %why, "token check failed");
                Err(Problem::unavailable(
                    "auth_unavailable",
                    "tokens cannot be checked right now; try again shortly",
                )
                .into())
            }
        }
    }

    /// Whether the account service answers.
    pub async fn ping(&self) -> Result<(), String> {
        self.checker.ping().await
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let token =
            shopeezy_common::extract::bearer_token(parts).map_err(Error::unauthenticated)?;
        state.auth.validate(token).await
    }
}
