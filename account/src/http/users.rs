//! The caller's own profile.

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use shopeezy_common::extract::Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AuthUser;
use crate::domain::{Email, Name, Password, Username};
use crate::error::{Error, Result};
use crate::startup::AppState;
use crate::store::{self, Changes, UserView};

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me, update_me, delete_me))
}

/// The caller's profile.
#[utoipa::path(get, path = "/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = shopeezy_common::Problem)))]
async fn me(caller: AuthUser) -> Json<UserView> {
    Json(UserView::from(&caller.user))
}

/// Changes to the caller's profile; absent members are kept.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMe {
    /// New display name.
    name: Option<String>,
    /// New username.
    username: Option<String>,
    /// New email (needs `current_password`).
    email: Option<String>,
    /// New password (needs `current_password`); revokes every token of the user.
    password: Option<String>,
    /// The present password, required to change email or password.
    current_password: Option<String>,
}

/// Updates the caller's profile. Changing the password signs the user out
/// everywhere: every token issued so far is refused.
#[utoipa::path(patch, path = "/v1/users/me", tag = "users", security(("bearer" = [])), request_body = UpdateMe,
    responses(
        (status = 200, body = UserView),
        (status = 403, body = shopeezy_common::Problem, description = "`invalid_current_password`"),
        (status = 409, body = shopeezy_common::Problem, description = "`email_taken` or `username_taken`"),
        (status = 422, body = shopeezy_common::Problem, description = "a field is invalid, or `current_password` is missing"),
    ))]
async fn update_me(
    State(state): State<AppState>,
    caller: AuthUser,
    Json(body): Json<UpdateMe>,
) -> Result<Json<UserView>> {
    let password = body.password.as_deref().map(Password::parse).transpose()?;
    let mut changes = Changes {
        name: body.name.as_deref().map(Name::parse).transpose()?,
        username: body.username.as_deref().map(Username::parse).transpose()?,
        email: body.email.as_deref().map(Email::parse).transpose()?,
        ..Changes::default()
    };
    if password.is_some() || changes.email.is_some() {
        let current = body.current_password.as_deref().ok_or(Error::invalid(
            "current_password",
            "is required to change the email or password",
        ))?;
        if !state
            .hasher
            .verify(current, Some(&caller.user.password_hash))
            .await?
        {
            return Err(Error::Refused(
                "invalid_current_password",
                "current_password is wrong",
            ));
        }
    }
    if let Some(password) = &password {
        changes.password_hash = Some(state.hasher.hash(password).await?);
        // Revoke first: if that cannot be done, nothing changes.
        state.revocation.revoke_user(caller.user.id).await?;
    }
    let user = store::update(&state.db, caller.user.id, changes)
        .await?
        .ok_or(Error::NotFound("user"))?;
    Ok(Json(UserView::from(&user)))
}

/// Deletes the caller's account and revokes all its tokens.
#[utoipa::path(delete, path = "/v1/users/me", tag = "users", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = shopeezy_common::Problem)))]
async fn delete_me(State(state): State<AppState>, caller: AuthUser) -> Result<StatusCode> {
    state.revocation.revoke_user(caller.user.id).await?;
    store::delete(&state.db, caller.user.id).await?;
    tracing::info!(user_id = %caller.user.id, "user deleted");
    Ok(StatusCode::NO_CONTENT)
}
