//! Who is calling: every bearer token is checked by the account service over
//! gRPC (`ValidateToken`), on one shared channel with timeouts. Nothing is
//! cached, so a revoked token is refused as soon as the account service
//! refuses it. When the account service cannot be reached the request is
//! answered 503 `auth_unavailable` — never let through.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use serde::Serialize;
use shopeezy_proto::client::{CheckError, TokenChecker};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::startup::AppState;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Shops.
    Customer,
    /// Sells its own products and installs plugins for them.
    Seller,
    /// Runs the platform.
    Admin,
}

impl Role {
    /// The role's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Seller => "seller",
            Self::Admin => "admin",
        }
    }
}

/// A signed-in caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The user's id.
    pub id: Uuid,
    /// The user's current role.
    pub role: Role,
}

impl Caller {
    /// Whether the caller is an admin.
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Whether the caller may act on something owned by `owner`: the owner
    /// itself, or an admin.
    pub fn may_manage(&self, owner: Uuid) -> bool {
        self.is_admin() || self.id == owner
    }
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
        let role = match reply.role.as_str() {
            "admin" => Role::Admin,
            "seller" => Role::Seller,
            _ => Role::Customer,
        };
        Ok(Caller { id, role })
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
            shopeezy_common::extract::bearer_token(parts).map_err(|why| Error::Unauthenticated(why.into()))?;
        state.auth.validate(token).await
    }
}

/// A caller who may sell: a seller or an admin; a customer is 403.
#[derive(Debug, Clone)]
pub struct Merchant(pub Caller);

impl FromRequestParts<AppState> for Merchant {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let caller = Caller::from_request_parts(parts, state).await?;
        match caller.role {
            Role::Seller | Role::Admin => Ok(Self(caller)),
            Role::Customer => Err(Error::Forbidden("this needs the seller or admin role")),
        }
    }
}

/// A signed-in admin; any other role is 403.
#[derive(Debug, Clone)]
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if !caller.is_admin() {
            return Err(Error::Forbidden("this needs the admin role"));
        }
        Ok(Self(caller))
    }
}
