//! The caller of a request, as extractors: [`Caller`] (any signed-in user),
//! [`Merchant`] (a seller or an admin) and [`Admin`]. Each bearer token is
//! verified in this process (`crate::auth::AuthClient`), against the keys
//! and revocations the account service pushes.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use crate::domain::{Caller, Role};
use crate::error::{Error, Result};
use crate::state::AppState;

impl FromRequestParts<AppState> for Caller {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let token = shopeezy_common::extract::bearer_token(parts)
            .map_err(|why| Error::Unauthenticated(why.into()))?;
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
