//! Who is calling: as in the host, every bearer token is checked by the
//! account service over gRPC (`ValidateToken`) on one shared channel, nothing
//! cached; when the account service cannot be reached the request is
//! answered 503 `auth_unavailable`, never let through.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use shopeezy_common::Problem;
use shopeezy_proto::auth::v1::ValidateTokenRequest;
use shopeezy_proto::auth::v1::auth_service_client::AuthServiceClient;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};
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
    client: AuthServiceClient<Channel>,
}

impl AuthClient {
    /// A client of `url` (`http://host:port`); it connects lazily and
    /// reconnects by itself.
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let channel = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(timeout)
            .timeout(timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .connect_lazy();
        Ok(Self {
            client: AuthServiceClient::new(channel),
        })
    }

    /// The caller a token belongs to.
    pub async fn validate(&self, token: &str) -> Result<Caller> {
        let reply = self
            .client
            .clone()
            .validate_token(ValidateTokenRequest {
                token: token.to_owned(),
            })
            .await;
        let reply = match reply {
            Ok(reply) => reply.into_inner(),
            Err(status) if status.code() == Code::Unauthenticated => {
                return Err(Error::unauthenticated(status.message()));
            }
            Err(status) => {
                tracing::warn!(code = ?status.code(), message = status.message(), "token check failed");
                return Err(Problem::unavailable(
                    "auth_unavailable",
                    "tokens cannot be checked right now; try again shortly",
                )
                .into());
            }
        };
        let id = Uuid::parse_str(&reply.user_id).map_err(|e| Error::Internal(e.into()))?;
        Ok(Caller { id })
    }

    /// Whether the account service answers (an empty token must be refused).
    pub async fn ping(&self) -> Result<(), String> {
        match self
            .client
            .clone()
            .validate_token(ValidateTokenRequest {
                token: String::new(),
            })
            .await
        {
            Err(status) if status.code() == Code::Unauthenticated => Ok(()),
            Err(status) => Err(format!("{:?}: {}", status.code(), status.message())),
            Ok(_) => Err("accepted an empty token".into()),
        }
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
