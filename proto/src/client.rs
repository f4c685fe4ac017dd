//! The client side of `AuthService` that other services share: one lazily
//! connected channel with timeouts, and token checks whose failures are
//! either "this token is not valid" or "it could not be checked" — a caller
//! must never treat the second as the first, nor let the request through.

use std::time::Duration;

use tonic::Code;
use tonic::transport::{Channel, Endpoint};

use crate::auth::v1::auth_service_client::AuthServiceClient;
use crate::auth::v1::{ValidateTokenRequest, ValidateTokenResponse};

/// Why a token check did not accept the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckError {
    /// The account service refused it (invalid, expired or revoked).
    Invalid(String),
    /// The account service could not be reached or could not check it.
    Unavailable(String),
}

/// Checks bearer tokens with the account service.
#[derive(Debug, Clone)]
pub struct TokenChecker {
    client: AuthServiceClient<Channel>,
}

impl TokenChecker {
    /// A checker of the service at `url` (`http://host:port`); it connects
    /// lazily and reconnects by itself, and every call is bounded by `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, tonic::transport::Error> {
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

    /// The user a token belongs to.
    pub async fn validate(&self, token: &str) -> Result<ValidateTokenResponse, CheckError> {
        match self
            .client
            .clone()
            .validate_token(ValidateTokenRequest {
                token: token.to_owned(),
            })
            .await
        {
            Ok(reply) => Ok(reply.into_inner()),
            Err(status) if status.code() == Code::Unauthenticated => {
                Err(CheckError::Invalid(status.message().to_owned()))
            }
            Err(status) => Err(CheckError::Unavailable(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
        }
    }

    /// Whether the account service answers (it must refuse an empty token).
    pub async fn ping(&self) -> Result<(), String> {
        match self.validate("").await {
            Err(CheckError::Invalid(_)) => Ok(()),
            Err(CheckError::Unavailable(why)) => Err(why),
            Ok(_) => Err("accepted an empty token".into()),
        }
    }
}
