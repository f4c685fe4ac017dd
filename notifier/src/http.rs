//! The REST API: a signed-in user reads the notifications written for them.

use axum::Router;
use axum::extract::State;
use serde::Deserialize;
use shopeezy_common::extract::{Json, Query};
use shopeezy_common::ops::BearerAuth;
use shopeezy_common::page::{Page, PageQuery};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Caller;
use crate::error::Result;
use crate::startup::AppState;
use crate::store::{self, Notification};

#[derive(OpenApi)]
#[openapi(
    info(title = "Shopeezy notifier", description = "The notifications each user would have been sent."),
    components(schemas(shopeezy_common::Problem)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// The API routes (with state applied) and their OpenAPI document.
pub fn api(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(list_mine))
        .split_for_parts();
    (router.with_state(state), openapi)
}

/// Paging of the notification list, newest first.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size (1–100, default 20).
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// The caller's notifications, newest first.
#[utoipa::path(get, path = "/v1/notifications", tag = "notifications", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = Page<Notification>), (status = 401, body = shopeezy_common::Problem)))]
async fn list_mine(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<Notification>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = page.limit()?;
    let after: Option<Uuid> = page.cursor()?;
    let rows = store::list(&state.db, caller.id, after, limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |n: &Notification| n.id)))
}
