//! The REST API: one module per resource, assembled with its OpenAPI document.

use axum::Router;
use shopeezy_common::ops::BearerAuth;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::startup::AppState;

pub mod admin;
pub mod auth;
pub mod cors;
pub mod users;

#[derive(OpenApi)]
#[openapi(
    info(title = "Shopeezy account service", description = "Users, roles, sign-in and tokens."),
    components(schemas(shopeezy_common::Problem)),
    modifiers(&BearerAuth),
)]
struct ApiDoc;

/// The API routes (with state applied) and their OpenAPI document.
pub fn api(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(auth::router())
        .merge(users::router())
        .merge(admin::router())
        .split_for_parts();
    (router.with_state(state), openapi)
}
