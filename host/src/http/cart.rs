//! The caller's cart, always answered priced by the same pipeline as
//! checkout (the rules are the use case's: `crate::cart`).

use axum::extract::State;
use serde::Deserialize;
use shopeezy_common::extract::{Json, Path};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::{Caller, PricedCart, Quantity, parse_code};
use crate::error::Result;
use crate::state::AppState;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(view, clear))
        .routes(routes!(set_item, remove_item))
        .routes(routes!(add_code))
        .routes(routes!(remove_code))
}

/// The cart, priced: lines, codes, adjustments, totals and violations.
#[utoipa::path(get, path = "/v1/cart", tag = "cart", security(("bearer" = [])),
    responses((status = 200, body = PricedCart), (status = 401, body = shopeezy_common::Problem)))]
async fn view(State(state): State<AppState>, caller: Caller) -> Result<Json<PricedCart>> {
    Ok(Json(state.carts.priced(&caller).await?))
}

/// Empties the cart (lines and codes).
#[utoipa::path(delete, path = "/v1/cart", tag = "cart", security(("bearer" = [])), responses((status = 200, body = PricedCart)))]
async fn clear(State(state): State<AppState>, caller: Caller) -> Result<Json<PricedCart>> {
    Ok(Json(state.carts.clear(&caller).await?))
}

/// A line's quantity.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetQuantity {
    /// 0 removes the line; at most 10,000.
    quantity: i64,
}

/// Sets a line's quantity (0 removes it). 409 `insufficient_stock` with
/// `available` when the stock is short now.
#[utoipa::path(put, path = "/v1/cart/items/{product_id}", tag = "cart", security(("bearer" = [])), request_body = SetQuantity,
    responses(
        (status = 200, body = PricedCart),
        (status = 404, body = shopeezy_common::Problem, description = "no such product on sale"),
        (status = 409, body = shopeezy_common::Problem, description = "`insufficient_stock`, `currency_mismatch` or `cart_full`"),
        (status = 422, body = shopeezy_common::Problem),
    ))]
async fn set_item(
    State(state): State<AppState>,
    caller: Caller,
    Path(product_id): Path<Uuid>,
    Json(body): Json<SetQuantity>,
) -> Result<Json<PricedCart>> {
    let quantity = (body.quantity != 0)
        .then(|| Quantity::parse(body.quantity))
        .transpose()?;
    Ok(Json(
        state
            .carts
            .set_quantity(&caller, product_id, quantity)
            .await?,
    ))
}

/// Removes a line.
#[utoipa::path(delete, path = "/v1/cart/items/{product_id}", tag = "cart", security(("bearer" = [])),
    responses((status = 200, body = PricedCart), (status = 404, body = shopeezy_common::Problem)))]
async fn remove_item(
    State(state): State<AppState>,
    caller: Caller,
    Path(product_id): Path<Uuid>,
) -> Result<Json<PricedCart>> {
    Ok(Json(state.carts.remove_item(&caller, product_id).await?))
}

/// A promotion code.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnterCode {
    /// 1–64 letters, digits, `-` or `_` (case-insensitive).
    code: String,
}

/// Enters a promotion code; the promotion plugins decide what it does.
#[utoipa::path(post, path = "/v1/cart/codes", tag = "cart", security(("bearer" = [])), request_body = EnterCode,
    responses((status = 200, body = PricedCart), (status = 409, body = shopeezy_common::Problem, description = "`too_many_codes`")))]
async fn add_code(
    State(state): State<AppState>,
    caller: Caller,
    Json(body): Json<EnterCode>,
) -> Result<Json<PricedCart>> {
    let code = parse_code(&body.code)?;
    Ok(Json(state.carts.add_code(&caller, &code).await?))
}

/// Removes a promotion code.
#[utoipa::path(delete, path = "/v1/cart/codes/{code}", tag = "cart", security(("bearer" = [])),
    responses((status = 200, body = PricedCart), (status = 404, body = shopeezy_common::Problem)))]
async fn remove_code(
    State(state): State<AppState>,
    caller: Caller,
    Path(code): Path<String>,
) -> Result<Json<PricedCart>> {
    let code = parse_code(&code)?;
    Ok(Json(state.carts.remove_code(&caller, &code).await?))
}
