//! The catalog: anyone browses; sellers and admins list and manage products.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Deserialize;
use shopeezy_common::extract::{Json, Path, Query};
use shopeezy_common::page::{Page, PageQuery};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use crate::domain::{
    Caller, Changes, NewProduct, Product, parse_attributes, parse_currency, parse_price, parse_sku,
    parse_stock, parse_tags, parse_text,
};
use crate::error::{Error, Result};
use crate::http::auth::Merchant;
use crate::state::AppState;
use crate::store::products::{self, Filter};

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_products, create_product))
        .routes(routes!(get_product, update_product, delete_product))
        .routes(routes!(set_stock))
}

/// Filters of the product list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Words the name contains (case-insensitive).
    q: Option<String>,
    /// A tag the product has.
    tag: Option<String>,
    /// The seller's id.
    seller_id: Option<Uuid>,
    /// Page size (1–100, default 20).
    limit: Option<u32>,
    /// The previous page's `next_cursor`.
    cursor: Option<String>,
}

/// Lists products on sale, in listing order.
#[utoipa::path(get, path = "/v1/products", tag = "catalog", params(ListQuery),
    responses((status = 200, body = Page<Product>), (status = 400, body = shopeezy_common::Problem)))]
async fn list_products(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Page<Product>>> {
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = page.limit()?;
    let after: Option<Uuid> = page.cursor()?;
    if q.q.as_ref().is_some_and(|q| q.chars().count() > 100) {
        return Err(Error::invalid("q", "must be at most 100 characters"));
    }
    let filter = Filter {
        q: q.q.filter(|q| !q.trim().is_empty()),
        tag: q.tag.map(|t| t.to_lowercase()),
        seller_id: q.seller_id,
    };
    let rows = products::list(&state.db, &filter, after, limit + 1).await?;
    Ok(Json(Page::from_rows(rows, limit, |p: &Product| p.id)))
}

/// One product on sale.
#[utoipa::path(get, path = "/v1/products/{id}", tag = "catalog",
    responses((status = 200, body = Product), (status = 404, body = shopeezy_common::Problem)))]
async fn get_product(State(state): State<AppState>, Path(id): Path<Uuid>) -> Result<Json<Product>> {
    Ok(Json(
        products::get(&state.db, id)
            .await?
            .ok_or_else(|| Error::NotFound("product"))?,
    ))
}

/// A new product.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    /// Unique among the seller's products: 1–64 of letters, digits, `-_.`.
    sku: String,
    /// 1–200 characters.
    name: String,
    /// Up to 5000 characters.
    #[serde(default)]
    description: String,
    /// Minor units of `currency`.
    price: i64,
    /// ISO 4217 code.
    currency: String,
    /// Initial stock (default 0).
    #[serde(default)]
    stock: i64,
    /// Up to 20 tags.
    #[serde(default)]
    tags: Vec<String>,
    /// Up to 50 string attributes plugins can read.
    #[serde(default)]
    attributes: BTreeMap<String, String>,
    /// For an admin: the seller the product belongs to (default: the caller).
    seller_id: Option<Uuid>,
}

/// Lists a product. A seller's product belongs to that seller; an admin may
/// list one for a seller.
#[utoipa::path(post, path = "/v1/products", tag = "catalog", security(("bearer" = ["seller", "admin"])), request_body = CreateProduct,
    responses(
        (status = 201, body = Product),
        (status = 403, body = shopeezy_common::Problem),
        (status = 409, body = shopeezy_common::Problem, description = "`sku_taken`"),
        (status = 422, body = shopeezy_common::Problem),
    ))]
async fn create_product(
    State(state): State<AppState>,
    Merchant(caller): Merchant,
    Json(body): Json<CreateProduct>,
) -> Result<impl IntoResponse> {
    let seller_id = match body.seller_id {
        Some(id) if id != caller.id && !caller.is_admin() => {
            return Err(Error::Forbidden("a seller lists products only for itself"));
        }
        Some(id) => id,
        None => caller.id,
    };
    let new = NewProduct {
        seller_id,
        sku: parse_sku(&body.sku)?,
        name: parse_text("name", &body.name, 1, 200, false)?,
        description: parse_text("description", &body.description, 0, 5000, true)?,
        price: parse_price(body.price)?,
        currency: parse_currency(&body.currency)?,
        stock: parse_stock(body.stock)?,
        tags: parse_tags(&body.tags)?,
        attributes: parse_attributes(&body.attributes)?,
    };
    let product = products::insert(&state.db, new).await?;
    let location = format!("/v1/products/{}", product.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(product),
    ))
}

/// Changes to a product; absent members are kept.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    sku: Option<String>,
    name: Option<String>,
    description: Option<String>,
    price: Option<i64>,
    currency: Option<String>,
    tags: Option<Vec<String>>,
    attributes: Option<BTreeMap<String, String>>,
}

/// The product if the caller may manage it: its seller or an admin. Another
/// seller's product is 403 (products are public, so hiding it is pointless).
async fn managed(state: &AppState, caller: &Caller, id: Uuid) -> Result<Product> {
    let product = products::get(&state.db, id)
        .await?
        .ok_or_else(|| Error::NotFound("product"))?;
    if !caller.may_manage(product.seller_id) {
        return Err(Error::Forbidden(
            "only the product's seller or an admin may change it",
        ));
    }
    Ok(product)
}

/// Updates a product.
#[utoipa::path(patch, path = "/v1/products/{id}", tag = "catalog", security(("bearer" = ["seller", "admin"])), request_body = UpdateProduct,
    responses((status = 200, body = Product), (status = 403, body = shopeezy_common::Problem), (status = 404, body = shopeezy_common::Problem)))]
async fn update_product(
    State(state): State<AppState>,
    Merchant(caller): Merchant,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateProduct>,
) -> Result<Json<Product>> {
    let changes = Changes {
        sku: body.sku.as_deref().map(parse_sku).transpose()?,
        name: body
            .name
            .as_deref()
            .map(|n| parse_text("name", n, 1, 200, false))
            .transpose()?,
        description: body
            .description
            .as_deref()
            .map(|d| parse_text("description", d, 0, 5000, true))
            .transpose()?,
        price: body.price.map(parse_price).transpose()?,
        currency: body.currency.as_deref().map(parse_currency).transpose()?,
        tags: body.tags.as_deref().map(parse_tags).transpose()?,
        attributes: body.attributes.as_ref().map(parse_attributes).transpose()?,
        stock: None,
    };
    managed(&state, &caller, id).await?;
    Ok(Json(
        products::update(&state.db, id, changes)
            .await?
            .ok_or_else(|| Error::NotFound("product"))?,
    ))
}

/// Hides a product from sale (and takes it out of carts); past orders keep their lines.
#[utoipa::path(delete, path = "/v1/products/{id}", tag = "catalog", security(("bearer" = ["seller", "admin"])),
    responses((status = 204), (status = 403, body = shopeezy_common::Problem), (status = 404, body = shopeezy_common::Problem)))]
async fn delete_product(
    State(state): State<AppState>,
    Merchant(caller): Merchant,
    Path(id): Path<Uuid>,
) -> Result<StatusCode> {
    managed(&state, &caller, id).await?;
    if !products::delete(&state.db, id).await? {
        return Err(Error::NotFound("product"));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A stock level.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetStock {
    /// Units available, 0 to 1,000,000,000.
    stock: i64,
}

/// Sets a product's stock level.
#[utoipa::path(put, path = "/v1/products/{id}/stock", tag = "catalog", security(("bearer" = ["seller", "admin"])), request_body = SetStock,
    responses((status = 200, body = Product), (status = 403, body = shopeezy_common::Problem), (status = 404, body = shopeezy_common::Problem)))]
async fn set_stock(
    State(state): State<AppState>,
    Merchant(caller): Merchant,
    Path(id): Path<Uuid>,
    Json(body): Json<SetStock>,
) -> Result<Json<Product>> {
    let stock = parse_stock(body.stock)?;
    managed(&state, &caller, id).await?;
    let changes = Changes {
        stock: Some(stock),
        ..Changes::default()
    };
    Ok(Json(
        products::update(&state.db, id, changes)
            .await?
            .ok_or_else(|| Error::NotFound("product"))?,
    ))
}
