//! The REST API: one module per resource, assembled with its OpenAPI document.

use std::collections::BTreeMap;

use axum::Router;
use shopeezy_common::ops::BearerAuth;
use utoipa::OpenApi;
use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder, Schema};
use utoipa_axum::router::OpenApiRouter;

use crate::error::Code;
use crate::state::AppState;

pub mod auth;
pub mod cart;
pub mod checkout;
pub mod console;
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
    let mut openapi = openapi;
    document_errors(&mut openapi, "/v1/checkout", checkout::ERRORS);
    document_codes(&mut openapi);
    (router.with_state(state), openapi)
}

/// Documents the error answers of the POST operation at `path` from the
/// error type: one response per status, naming its codes and their members.
fn document_errors(openapi: &mut utoipa::openapi::OpenApi, path: &str, codes: &[Code]) {
    let Some(operation) = openapi
        .paths
        .paths
        .get_mut(path)
        .and_then(|item| item.post.as_mut())
    else {
        return;
    };
    let mut by_status: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for code in codes {
        let described = match code.members() {
            "" => format!("`{}`", code.as_str()),
            members => format!("`{}` with {members}", code.as_str()),
        };
        by_status
            .entry(code.status().as_u16())
            .or_default()
            .push(described);
    }
    for (status, described) in by_status {
        let response = ResponseBuilder::new()
            .description(described.join("; "))
            .content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build();
        operation
            .responses
            .responses
            .insert(status.to_string(), response.into());
    }
}

/// Lists, in the `Problem` schema, every `code` the host itself answers with
/// (extractors and paging from `shopeezy_common` add a few of their own).
fn document_codes(openapi: &mut utoipa::openapi::OpenApi) {
    let problem = openapi
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("Problem"));
    let Some(RefOr::T(Schema::Object(problem))) = problem else {
        return;
    };
    let Some(RefOr::T(Schema::Object(code))) = problem.properties.get_mut("code") else {
        return;
    };
    let mut codes: Vec<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    codes.sort_unstable();
    codes.dedup();
    let listed: Vec<String> = codes.iter().map(|c| format!("`{c}`")).collect();
    code.description = Some(format!(
        "A stable machine-readable code. The host answers with: {}.",
        listed.join(", ")
    ));
}
