//! Registration, sign-in, sign-out and the public keys.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use shopeezy_common::extract::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{AuthUser, ClientAddr};
use crate::domain::{Email, Name, Password, Role, Username};
use crate::error::{Error, Result};
use crate::startup::AppState;
use crate::store::{self, NewUser, UserView};

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(jwks))
}

/// A registration.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Register {
    /// Display name, 1–100 characters.
    name: String,
    /// 3–32 characters of a-z, 0-9, `_`, `.`, `-` (lower-cased).
    username: String,
    /// Email address (lower-cased).
    email: String,
    /// 8–256 characters.
    password: String,
}

/// Registers a customer.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = Register,
    responses(
        (status = 201, body = UserView, description = "registered"),
        (status = 409, body = shopeezy_common::Problem, description = "`email_taken` or `username_taken`"),
        (status = 422, body = shopeezy_common::Problem, description = "a field is invalid"),
    ))]
async fn register(
    State(state): State<AppState>,
    Json(body): Json<Register>,
) -> Result<(StatusCode, Json<UserView>)> {
    let name = Name::parse(&body.name)?;
    let username = Username::parse(&body.username)?;
    let email = Email::parse(&body.email)?;
    let password = Password::parse(&body.password)?;
    let password_hash = state.hasher.hash(&password).await?;
    let user = store::create(
        &state.db,
        NewUser {
            name,
            username,
            email,
            password_hash,
            role: Role::Customer,
        },
    )
    .await?;
    tracing::info!(user_id = %user.id, "user registered");
    Ok((StatusCode::CREATED, Json(UserView::from(&user))))
}

/// A sign-in by email or by username.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The email address (or give `username`).
    email: Option<String>,
    /// The username (or give `email`).
    username: Option<String>,
    /// The password.
    password: String,
}

/// A new access token.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    /// The JWT to send as `Authorization: Bearer …`.
    access_token: String,
    /// Always `Bearer`.
    token_type: &'static str,
    /// Seconds until the token expires.
    expires_in: u64,
    /// The signed-in user.
    user: UserView,
}

/// Signs in. After repeated failures for one account from one client
/// address, that address is answered 429 with `Retry-After` for that account
/// until the window passes (other addresses still sign in); after many
/// failures from one address across accounts, for every account.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = Login,
    responses(
        (status = 200, body = TokenResponse),
        (status = 401, body = shopeezy_common::Problem, description = "`invalid_credentials`, also for an unknown user"),
        (status = 429, body = shopeezy_common::Problem, description = "`too_many_attempts`"),
    ))]
async fn login(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    Json(body): Json<Login>,
) -> Result<Json<TokenResponse>> {
    let login = match (body.email.as_deref(), body.username.as_deref()) {
        (Some(login), None) | (None, Some(login)) if !login.trim().is_empty() => {
            login.trim().to_lowercase()
        }
        _ => {
            return Err(Error::invalid(
                "email",
                "or username (one of them) is required",
            ));
        }
    };
    let user = store::by_login(&state.db, &login).await?;
    // Failures count per account (whether it is named by email or username;
    // for an unknown user, per login text) and client address.
    let attempt = state
        .throttle
        .attempt(user.as_ref().map(|u| u.id), &login, address);
    if let Some(retry_after) = state.throttle.begin(&attempt).await? {
        return Err(Error::Throttled(retry_after));
    }
    let ok = state
        .hasher
        .verify(
            &body.password,
            user.as_ref().map(|u| u.password_hash.as_str()),
        )
        .await?;
    let Some(user) = user.filter(|_| ok) else {
        state.throttle.failed(&attempt).await?;
        metrics::counter!("account_logins_total", "outcome" => "failed").increment(1);
        return Err(Error::InvalidCredentials);
    };
    state.throttle.succeeded(&attempt).await?;
    let (access_token, claims) = state.keys.issue(&user)?;
    metrics::counter!("account_logins_total", "outcome" => "succeeded").increment(1);
    Ok(Json(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: claims.exp.saturating_sub(claims.iat),
        user: UserView::from(&user),
    }))
}

/// Signs out: the token is refused everywhere from now until it expires.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = shopeezy_common::Problem)))]
async fn logout(State(state): State<AppState>, caller: AuthUser) -> Result<StatusCode> {
    state.revocation.revoke_token(&caller.claims).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The public keys that verify access tokens (JWKS), for offline checks.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, body = Object)))]
async fn jwks(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(state.keys.jwks())
}
