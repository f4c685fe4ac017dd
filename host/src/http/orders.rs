//! Orders: the owner reads and cancels its own; an admin sees all and moves
//! them through their states.

use axum::extract::State;
use serde::Deserialize;
use shopeezy_common::extract::{Json, Path, Query};
use shopeezy_common::page::{Page, PageQuery};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::{Caller, Order, Status};
use crate::error::{Error, Result};
use crate::http::auth::Admin;
use crate::state::AppState;
use crate::store::orders;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_mine))
        .routes(routes!(get_order))
        .routes(routes!(cancel))
        .routes(routes!(list_all))
        .routes(routes!(move_order))
}

/// Paging of an order list, newest first.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Page size (1–100, default 20).
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

async fn page(state: &AppState, user_id: Option<Uuid>, q: ListQuery) -> Result<Json<Page<Order>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = page.limit()?;
    let after: Option<Uuid> = page.cursor()?;
    let rows = orders::list(&state.db, user_id, after, limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |o: &Order| o.id)))
}

/// The caller's orders, newest first.
#[utoipa::path(get, path = "/v1/orders", tag = "orders", security(("bearer" = [])), params(ListQuery),
    responses((status = 200, body = Page<Order>)))]
async fn list_mine(
    State(state): State<AppState>,
    caller: Caller,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<Order>>> {
    page(&state, Some(caller.id), q).await
}

/// The order if the caller may see it: its owner or an admin. Anyone else
/// gets 404, as if it did not exist.
async fn visible(state: &AppState, caller: &Caller, id: Uuid) -> Result<Order> {
    match orders::get(&state.db, id).await? {
        Some(order) if caller.may_manage(order.user_id) => Ok(order),
        _ => Err(Error::NotFound("order")),
    }
}

/// One of the caller's orders.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders", security(("bearer" = [])),
    responses((status = 200, body = Order), (status = 404, body = shopeezy_common::Problem)))]
async fn get_order(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Order>> {
    Ok(Json(visible(&state, &caller, id).await?))
}

/// Cancels a placed or paid order; its stock goes back.
#[utoipa::path(post, path = "/v1/orders/{id}/cancel", tag = "orders", security(("bearer" = [])),
    responses(
        (status = 200, body = Order),
        (status = 404, body = shopeezy_common::Problem),
        (status = 409, body = shopeezy_common::Problem, description = "`invalid_transition`"),
    ))]
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<Uuid>,
) -> Result<Json<Order>> {
    visible(&state, &caller, id).await?;
    Ok(Json(
        orders::transition(&state.db, id, Status::Cancelled).await?,
    ))
}

/// Every order, newest first.
#[utoipa::path(get, path = "/v1/admin/orders", tag = "admin", security(("bearer" = ["admin"])), params(ListQuery),
    responses((status = 200, body = Page<Order>), (status = 403, body = shopeezy_common::Problem)))]
async fn list_all(
    State(state): State<AppState>,
    _admin: Admin,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<Order>>> {
    page(&state, None, q).await
}

/// A new status.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MoveOrder {
    /// `paid`, `shipped`, `delivered` or `cancelled`.
    status: Status,
}

/// Moves an order on: `placed → paid → shipped → delivered`, or
/// `placed | paid → cancelled`; any other move is 409 `invalid_transition`.
#[utoipa::path(post, path = "/v1/admin/orders/{id}/status", tag = "admin", security(("bearer" = ["admin"])), request_body = MoveOrder,
    responses(
        (status = 200, body = Order),
        (status = 404, body = shopeezy_common::Problem),
        (status = 409, body = shopeezy_common::Problem, description = "`invalid_transition`"),
    ))]
async fn move_order(
    State(state): State<AppState>,
    _admin: Admin,
    Path(id): Path<Uuid>,
    Json(body): Json<MoveOrder>,
) -> Result<Json<Order>> {
    Ok(Json(orders::transition(&state.db, id, body.status).await?))
}
