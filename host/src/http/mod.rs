//! The REST API: one module per resource, assembled with its OpenAPI document.

use axum::Router;
use shopeezy_common::ops::BearerAuth;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

pub mod auth;
pub mod cart;
pub mod checkout;
pub mod orders;
pub mod plugins;
pub mod products;

#[derive(OpenApi)]
#[openapi(
    info(title = "Shopeezy host", description = "Catalog, carts, checkout, orders and plugins."),
    components(schemas(shopeezy_common::Problem)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// The API routes (with state applied) and their OpenAPI document.
pub fn api(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(products::router())
        .merge(cart::router())
        .merge(checkout::router())
        .merge(orders::router())
        .merge(plugins::router(
            state.pipeline.registry().runtime().limits.module_bytes,
        ))
        .split_for_parts();
    (router.with_state(state), openapi)
}

