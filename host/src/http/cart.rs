//! The caller's cart, always answered priced by the same pipeline as checkout.

use axum::extract::State;
use chrono::Utc;
use serde::Deserialize;
use shopeezy_common::extract::{Json, Path};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::auth::Caller;
use crate::domain::{Quantity, parse_code};
use crate::error::{Error, Result, Shortage};
use crate::pricing::{Customer, PricedCart};
use crate::startup::AppState;
use crate::store::{carts, orders, products};

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(view, clear))
        .routes(routes!(set_item, remove_item))
        .routes(routes!(add_code))
        .routes(routes!(remove_code))
}

/// The caller's cart, priced.
pub async fn priced(state: &AppState, caller: &Caller) -> Result<PricedCart> {
    let cart = carts::get(&state.db, caller.id).await?;
    let order_count = orders::count_for_user(&state.db, caller.id).await?;
    let customer = Customer {
        id: caller.id,
        role: caller.role,
        order_count,
    };
    let priced = state.pipeline.price(&cart, &customer, Utc::now()).await?;
    // Show what checkout would charge: a discount whose limit is used up is gone.
    let exhausted = crate::store::usage::exhausted(&state.db, &priced, caller.id).await?;
    if exhausted.is_empty() {
        Ok(priced)
    } else {
        priced.without(&exhausted)
    }
}

/// The cart, priced: lines, codes, adjustments, totals and violations.
#[utoipa::path(get, path = "/v1/cart", tag = "cart", security(("bearer" = [])),
    responses((status = 200, body = PricedCart), (status = 401, body = shopeezy_common::Problem)))]
async fn view(State(state): State<AppState>, caller: Caller) -> Result<Json<PricedCart>> {
    Ok(Json(priced(&state, &caller).await?))
}

/// Empties the cart (lines and codes).
#[utoipa::path(delete, path = "/v1/cart", tag = "cart", security(("bearer" = [])), responses((status = 200, body = PricedCart)))]
async fn clear(State(state): State<AppState>, caller: Caller) -> Result<Json<PricedCart>> {
    carts::clear(&state.db, caller.id).await?;
    Ok(Json(priced(&state, &caller).await?))
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
    if body.quantity == 0 {
        carts::remove(&state.db, caller.id, product_id).await?;
        return Ok(Json(priced(&state, &caller).await?));
    }
    let quantity = Quantity::parse(body.quantity)?;
    let product = products::get(&state.db, product_id)
        .await?
        .ok_or_else(|| Error::NotFound("product"))?;
    if quantity.get() > product.stock {
        return Err(Error::InsufficientStock(Shortage {
            product_id: product.id,
            requested: quantity.get(),
            available: product.stock,
        }));
    }
    let cart = carts::get(&state.db, caller.id).await?;
    if let Some(other) = cart
        .lines
        .iter()
        .find(|l| l.product.currency != product.currency && l.product.id != product.id)
    {
        return Err(Error::CurrencyMismatch {
            cart: other.product.currency.clone(),
            product: product.currency,
        });
    }
    // The pricing of a cart (plugins included) grows with its lines: a cart
    // has a bound like every other input (a racing PUT of the same shopper
    // may add one more).
    let max_lines = state.pipeline.registry().runtime().limits.cart_lines;
    if cart.lines.len() >= max_lines && !cart.lines.iter().any(|l| l.product.id == product_id) {
        return Err(Error::CartFull(max_lines));
    }
    carts::set_quantity(&state.db, caller.id, product_id, quantity.get()).await?;
    Ok(Json(priced(&state, &caller).await?))
}

/// Removes a line.
#[utoipa::path(delete, path = "/v1/cart/items/{product_id}", tag = "cart", security(("bearer" = [])),
    responses((status = 200, body = PricedCart), (status = 404, body = shopeezy_common::Problem)))]
async fn remove_item(
    State(state): State<AppState>,
    caller: Caller,
    Path(product_id): Path<Uuid>,
) -> Result<Json<PricedCart>> {
    if !carts::remove(&state.db, caller.id, product_id).await? {
        return Err(Error::NotFound("cart line"));
    }
    Ok(Json(priced(&state, &caller).await?))
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
    if !carts::add_code(&state.db, caller.id, &code).await? {
        return Err(Error::TooManyCodes(carts::MAX_CODES));
    }
    Ok(Json(priced(&state, &caller).await?))
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
    if !carts::remove_code(&state.db, caller.id, &code).await? {
        return Err(Error::NotFound("code"));
    }
    Ok(Json(priced(&state, &caller).await?))
}
