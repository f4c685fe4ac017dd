//! Administration of users: list, read, change a role.

use axum::extract::State;
use serde::Deserialize;
use shopeezy_common::extract::{Json, Path, Query};
use shopeezy_common::page::{Page, PageQuery};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Admin;
use crate::domain::Role;
use crate::error::{Error, Result};
use crate::startup::AppState;
use crate::store::{self, UserView};

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users))
        .routes(routes!(get_user, change_role))
}

/// Filters of the user list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only users of this role.
    role: Option<Role>,
    /// Page size (1–100, default 20).
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// Lists users in registration order.
#[utoipa::path(get, path = "/v1/admin/users", tag = "admin", security(("bearer" = ["admin"])), params(ListQuery),
    responses((status = 200, body = Page<UserView>), (status = 403, body = shopeezy_common::Problem)))]
async fn list_users(
    State(state): State<AppState>,
    _admin: Admin,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<UserView>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = page.limit()?;
    let after: Option<Uuid> = page.cursor()?;
    let users = store::list(&state.db, after, q.role, limit + 1).await?;
    let views = users.iter().map(UserView::from).collect();
    Ok(Json(Page::from_rows(views, limit, |u: &UserView| u.id)))
}

/// One user.
#[utoipa::path(get, path = "/v1/admin/users/{id}", tag = "admin", security(("bearer" = ["admin"])),
    responses((status = 200, body = UserView), (status = 404, body = shopeezy_common::Problem)))]
async fn get_user(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<Uuid>,
) -> Result<Json<UserView>> {
    let user = store::by_id(&state.db, id)
        .await?
        .ok_or(Error::NotFound("user"))?;
    Ok(Json(UserView::from(&user)))
}

/// A new role.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeRole {
    /// `customer`, `seller` or `admin`.
    role: Role,
}

/// Changes a user's role (e.g. makes a seller). In force at once here and in
/// `ValidateToken` (every check reads the current role); services that verify
/// tokens themselves apply it to the user's existing tokens within a second
/// (`WatchRevocations`).
#[utoipa::path(patch, path = "/v1/admin/users/{id}", tag = "admin", security(("bearer" = ["admin"])), request_body = ChangeRole,
    responses(
        (status = 200, body = UserView),
        (status = 404, body = shopeezy_common::Problem),
        (status = 409, body = shopeezy_common::Problem, description = "`cannot_change_own_role`"),
    ))]
async fn change_role(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<Uuid>,
    Json(body): Json<ChangeRole>,
) -> Result<Json<UserView>> {
    if id == admin.user.id {
        // An admin demoting itself could leave the platform without one.
        return Err(Error::Conflict(
            "cannot_change_own_role",
            "an admin cannot change its own role",
        ));
    }
    let user = store::change_role(&state.db, id, body.role, state.revocation.token_ttl_secs())
        .await?
        .ok_or(Error::NotFound("user"))?;
    state.revocation.wrote();
    tracing::info!(user_id = %id, role = user.role.as_str(), by = %admin.user.id, "role changed");
    Ok(Json(UserView::from(&user)))
}
