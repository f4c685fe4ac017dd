//! Who is calling: the `AuthUser`, `Admin` and `ClientAddr` extractors, and
//! the one token check that REST and gRPC share.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::domain::Role;
use crate::error::{Error, Result};
use crate::startup::AppState;
use crate::store::{self, User};
use crate::tokens::Claims;

/// A signed-in user: a valid, unrevoked bearer token of an existing user.
#[derive(Debug, Clone)]
pub struct AuthUser {
    /// The user, as stored now (so a role change is in force at once).
    pub user: User,
    /// The token's claims.
    pub claims: Claims,
}

/// Checks a token: signature, issuer, audience, expiry, revocation (failing
/// closed when the revocation store is down), and that its user still exists.
pub async fn authenticate(state: &AppState, token: &str) -> Result<AuthUser> {
    let claims = state.keys.verify(token)?;
    if state.revocation.is_revoked(&claims).await? {
        return Err(Error::Unauthenticated("the token has been revoked"));
    }
    let user = store::by_id(&state.db, claims.sub)
        .await?
        .ok_or(Error::Unauthenticated("the token's user no longer exists"))?;
    Ok(AuthUser { user, claims })
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let token =
            shopeezy_common::extract::bearer_token(parts).map_err(Error::Unauthenticated)?;
        authenticate(state, token).await
    }
}

/// A signed-in admin; any other role is 403.
#[derive(Debug, Clone)]
pub struct Admin(pub AuthUser);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let caller = AuthUser::from_request_parts(parts, state).await?;
        if caller.user.role != Role::Admin {
            return Err(Error::Forbidden("admin"));
        }
        Ok(Self(caller))
    }
}

/// The client's IP address: the TCP peer of the connection (a forwarded-for
/// header is the client's to write, so it is not believed).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Infallible> {
        // Served without connection info (not the way the service runs), every
        // client shares one address: throttling gets stricter, never looser.
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |info| info.0.ip());
        Ok(Self(ip))
    }
}
