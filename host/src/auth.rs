//! Who is calling: every bearer token is checked by the account service over
//! gRPC (`ValidateToken`), on one shared channel with timeouts (the
//! extractors that ask it are in `http::auth`). Nothing is cached, so a
//! revoked token is refused as soon as the account service refuses it. When the account service cannot be reached the request is
//! answered 503 `auth_unavailable` — never let through.

use std::time::Duration;

use shopeezy_proto::client::{CheckError, TokenChecker};
use uuid::Uuid;

use crate::domain::{Caller, Role};
use crate::error::{Error, Result};

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
        let started = std::time::Instant::now();
        let reply = self.checker.validate(token).await;
        metrics::histogram!("host_auth_validate_seconds").record(started.elapsed().as_secs_f64());
        let reply = match reply {
            Ok(reply) => reply,
            Err(CheckError::Invalid(why)) => return Err(Error::Unauthenticated(why)),
            Err(CheckError::Unavailable(why)) => {
                tracing::warn!(reason = %why, "token check failed");
                return Err(Error::AuthUnavailable);
            }
        };
        let id = Uuid::parse_str(&reply.user_id).map_err(|e| Error::Internal(e.into()))?;
        Ok(Caller {
            id,
            role: Role::from_account(&reply.role),
        })
    }

    /// Whether the account service answers.
    pub async fn ping(&self) -> Result<(), String> {
        self.checker.ping().await
    }
}
