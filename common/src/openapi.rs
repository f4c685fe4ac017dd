//! The rules every service's OpenAPI document follows, applied in one place
//! ([`finish`]) to the document the handlers' annotations produce, so that
//! the published reference says what the shared code really answers:
//!
//! - every error answer (4xx, 5xx) is `application/problem+json` with the
//!   [`Problem`] schema, whatever its annotation said;
//! - an operation that takes a bearer token documents 401 `unauthorized`;
//! - an operation whose security requirement names roles
//!   (`security(("bearer" = ["admin"]))`, the OpenAPI 3.1 way of saying
//!   which roles may call it) documents 403 `forbidden`;
//! - an operation with a required JSON body (read by
//!   [`crate::extract::Json`]) documents 400 `malformed_json`, 413
//!   `body_too_large`, 415 `unsupported_media_type` and 422 `invalid_body`;
//! - `/healthz`, `/readyz` and `/metrics` are documented (see
//!   [`crate::ops`]).
//!
//! A status an annotation already documents keeps its description (it is
//! the more specific one); it only gets the problem content.

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::request_body::RequestBody;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, OpenApi, Ref, RefOr, Required};
use utoipa::{PartialSchema, ToSchema};

use crate::Problem;
use crate::problem::PROBLEM_JSON;

/// The name of the security scheme the services' tokens are declared under
/// (see [`crate::ops::BearerAuth`]).
pub const BEARER: &str = "bearer";

/// Applies the rules above to a service's document.
pub fn finish(mut openapi: OpenApi) -> OpenApi {
    let components = openapi.components.get_or_insert_with(Default::default);
    components
        .schemas
        .entry(Problem::name().into_owned())
        .or_insert_with(Problem::schema);
    for item in openapi.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            document_operation(operation);
        }
    }
    // After the rules: a readiness report is not an error answer, its 503
    // is the same JSON report as its 200.
    openapi.merge(crate::ops::operations_doc());
    openapi
}

/// The operations of a path item, whatever their method.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn document_operation(operation: &mut Operation) {
    if let Some(roles) = bearer_roles(operation) {
        add_response(
            operation,
            401,
            "`unauthorized`: no valid bearer token (missing, malformed, expired, revoked, \
             or of a user that no longer exists)",
        );
        if let Some(RefOr::T(response)) = operation.responses.responses.get_mut("401") {
            response
                .headers
                .entry("WWW-Authenticate".to_owned())
                .or_insert_with(|| {
                    HeaderBuilder::new()
                        .schema(ObjectBuilder::new().schema_type(Type::String))
                        .description(Some("`Bearer`"))
                        .build()
                });
        }
        if !roles.is_empty() {
            add_response(
                operation,
                403,
                &format!("`forbidden`: needs the {} role", roles.join(" or ")),
            );
        }
    }
    if operation.request_body.as_ref().is_some_and(takes_json) {
        add_response(operation, 400, "`malformed_json`: the body is not JSON");
        add_response(
            operation,
            413,
            "`body_too_large`: the body is larger than this endpoint accepts",
        );
        add_response(
            operation,
            415,
            "`unsupported_media_type`: the body is not sent as `Content-Type: application/json`",
        );
        add_response(
            operation,
            422,
            "`invalid_body`: a member has the wrong type, is missing or unknown, \
             or a text holds the NUL character",
        );
    }
    for (status, response) in operation.responses.responses.iter_mut() {
        if is_error(status)
            && let RefOr::T(response) = response
        {
            problem_content(response);
        }
    }
}

/// The roles a bearer token must have (empty: any signed-in user), or `None`
/// when the operation takes no token.
fn bearer_roles(operation: &Operation) -> Option<Vec<String>> {
    let requirements = operation.security.as_ref()?;
    // `SecurityRequirement` keeps its map private; its JSON form is the map.
    let value = serde_json::to_value(requirements).ok()?;
    value
        .as_array()?
        .iter()
        .find_map(|requirement| requirement.get(BEARER))
        .map(|roles| {
            roles
                .as_array()
                .map(|roles| {
                    roles
                        .iter()
                        .filter_map(|r| r.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        })
}

/// Whether the operation requires a JSON body, which the shared extractor
/// reads (and refuses with 400, 413, 415 or 422).
fn takes_json(body: &RequestBody) -> bool {
    matches!(body.required, Some(Required::True)) && body.content.contains_key("application/json")
}

/// Whether a response key is a 4xx or 5xx status (or a `4XX`/`5XX` range).
fn is_error(status: &str) -> bool {
    status.starts_with('4') || status.starts_with('5')
}

/// Documents `status` with `description` unless the operation already does.
fn add_response(operation: &mut Operation, status: u16, description: &str) {
    let response = operation
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| RefOr::T(ResponseBuilder::new().build()));
    if let RefOr::T(response) = response
        && response.description.is_empty()
    {
        response.description = description.to_owned();
    }
}

/// Makes a response's content the problem document, and only that.
fn problem_content(response: &mut Response) {
    response.content.clear();
    response.content.insert(
        PROBLEM_JSON.to_owned(),
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(Problem::name())))
            .build(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    use utoipa::openapi::request_body::RequestBodyBuilder;
    use utoipa::openapi::security::SecurityRequirement;
    use utoipa::openapi::{ContentBuilder, OpenApiBuilder, PathsBuilder};

    fn document(operation: Operation) -> serde_json::Value {
        let openapi = OpenApiBuilder::new()
            .paths(PathsBuilder::new().path("/x", PathItem::new(HttpMethod::Post, operation)))
            .build();
        serde_json::to_value(finish(openapi)).expect("serializable")
    }

    #[test]
    fn error_answers_become_problems_and_tokens_roles_and_bodies_are_documented() {
        let operation = OperationBuilder::new()
            .security(SecurityRequirement::new(BEARER, ["seller", "admin"]))
            .request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/json", ContentBuilder::new().build())
                    .required(Some(Required::True))
                    .build(),
            ))
            .response(
                "404",
                ResponseBuilder::new()
                    .description("no such thing")
                    .content("application/json", ContentBuilder::new().build()),
            )
            .response("200", ResponseBuilder::new().description("ok"))
            .build();
        let doc = document(operation);
        let responses = &doc["paths"]["/x"]["post"]["responses"];
        for status in ["400", "401", "403", "404", "413", "415", "422"] {
            let content = responses[status]["content"]
                .as_object()
                .unwrap_or_else(|| panic!("{status}: {responses}"));
            assert_eq!(
                content.keys().collect::<Vec<_>>(),
                [PROBLEM_JSON],
                "{status}"
            );
            assert_eq!(
                content[PROBLEM_JSON]["schema"]["$ref"],
                "#/components/schemas/Problem"
            );
        }
        assert_eq!(responses["404"]["description"], "no such thing");
        assert!(
            responses["403"]["description"]
                .as_str()
                .is_some_and(|d| d.contains("seller or admin")),
            "{responses}"
        );
        assert!(responses["401"]["headers"]["WWW-Authenticate"].is_object());
        assert!(responses["200"].get("content").is_none());
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        for path in ["/healthz", "/readyz", "/metrics"] {
            assert!(doc["paths"][path]["get"].is_object(), "{path}");
        }
    }

    #[test]
    fn an_open_operation_without_a_body_gets_no_401_403_or_415() {
        let operation = OperationBuilder::new()
            .request_body(Some(
                RequestBodyBuilder::new()
                    .content("application/json", ContentBuilder::new().build())
                    .required(Some(Required::False))
                    .build(),
            ))
            .response("200", ResponseBuilder::new().description("ok"))
            .build();
        let doc = document(operation);
        let responses = doc["paths"]["/x"]["post"]["responses"]
            .as_object()
            .expect("responses");
        assert_eq!(responses.keys().collect::<Vec<_>>(), ["200"]);
    }

    #[test]
    fn any_signed_in_user_gets_401_but_no_403() {
        let operation = OperationBuilder::new()
            .security(SecurityRequirement::new::<_, _, String>(BEARER, []))
            .response("200", ResponseBuilder::new().description("ok"))
            .build();
        let doc = document(operation);
        let responses = &doc["paths"]["/x"]["post"]["responses"];
        assert!(responses["401"].is_object());
        assert!(responses.get("403").is_none());
    }
}
