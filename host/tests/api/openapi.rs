//! The API reference as a user gets it from the running host: the `/docs`
//! page loads everything from the service itself, and `/openapi.json`
//! documents every error the way the service answers it (problem+json, 401
//! on every operation that takes a token, 403 where a role is needed, 415
//! where a JSON body is read), which is then checked against the service.
//!
//! Self-contained on purpose: of the helpers only `spawn_app`, the client,
//! the base URL, `customer()` and the signed-in admin are used.

use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;

use shopeezy_testkit::openapi::*;

use crate::helpers::{Backend, spawn_app};

/// The operations that need a role, with the roles the document must name
/// (the `Merchant` extractor: seller or admin; `Admin`: admin).
const ROLE_OPERATIONS: &[(&str, &[&str])] = &[
    ("POST /v1/products", &["seller", "admin"]),
    ("PATCH /v1/products/{id}", &["seller", "admin"]),
    ("DELETE /v1/products/{id}", &["seller", "admin"]),
    ("PUT /v1/products/{id}/stock", &["seller", "admin"]),
    ("GET /v1/plugins", &["seller", "admin"]),
    ("POST /v1/plugins", &["seller", "admin"]),
    ("GET /v1/plugins/{id}", &["seller", "admin"]),
    ("PATCH /v1/plugins/{id}", &["seller", "admin"]),
    ("DELETE /v1/plugins/{id}", &["seller", "admin"]),
    ("PUT /v1/plugins/{id}/component", &["seller", "admin"]),
    ("POST /v1/plugins/{id}/dry-run", &["seller", "admin"]),
    ("GET /v1/plugins/{id}/stats", &["seller", "admin"]),
    ("GET /v1/admin/orders", &["admin"]),
    ("POST /v1/admin/orders/{id}/status", &["admin"]),
];

/// The operations whose body the shared JSON extractor does not read, so
/// they document no 415: the checkout's optional body is read raw (its
/// content type is not looked at), a plugin comes as multipart, a component
/// as raw bytes of any type.
const NOT_JSON_BODIES: &[&str] = &[
    "POST /v1/checkout",
    "POST /v1/plugins",
    "PUT /v1/plugins/{id}/component",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_docs_page_loads_everything_from_the_service() {
    let Some(app) = spawn_app(Backend::Embedded).await else {
        return;
    };
    check_docs_page(&app.api.client, &app.api.host_url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_document_follows_the_error_rules() {
    let Some(app) = spawn_app(Backend::Embedded).await else {
        return;
    };
    let doc = document(&app.api.client, &app.api.host_url).await;
    check_rules(&doc, ROLE_OPERATIONS, NOT_JSON_BODIES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn documented_401_403_and_415_are_what_the_service_answers() {
    let Some(app) = spawn_app(Backend::Embedded).await else {
        return;
    };
    let (client, base) = (&app.api.client, app.api.host_url.as_str());
    let doc = document(client, base).await;
    let customer = app.api.customer().await;
    let admin = &app.api.admin.token;
    let mut wrong = Vec::new();
    for op in operations(&doc) {
        let url = format!("{base}{}", fill_path(&op.path));
        if op.has_security() {
            // Without a token: 401, whatever else the request lacks.
            let reply = call(client.request(op.method.clone(), &url)).await;
            if let Err(why) = reply.is_problem(401, "unauthorized") {
                wrong.push(format!("{op} without a token: {why}"));
            } else if reply.header("www-authenticate") != Some("Bearer") {
                wrong.push(format!(
                    "{op} without a token: no `WWW-Authenticate: Bearer`"
                ));
            }
            // A customer: 403 exactly where a role is documented.
            let reply = call(
                client
                    .request(op.method.clone(), &url)
                    .bearer_auth(&customer.token),
            )
            .await;
            let forbidden = reply.status == StatusCode::FORBIDDEN && reply.code() == "forbidden";
            if op.roles().is_empty() {
                if forbidden {
                    wrong.push(format!(
                        "{op}: a customer is refused 403 but no role is documented"
                    ));
                }
            } else if let Err(why) = reply.is_problem(403, "forbidden") {
                wrong.push(format!("{op} as a customer: {why}"));
            }
        }
        if op.documents("415") {
            // The admin may call anything: the body's type is what is refused.
            let mut request = client
                .request(op.method.clone(), &url)
                .header(CONTENT_TYPE, "text/plain")
                .body("{}");
            if op.has_security() {
                request = request.bearer_auth(admin);
            }
            let reply = call(request).await;
            if let Err(why) = reply.is_problem(415, "unsupported_media_type") {
                wrong.push(format!("{op} with a text/plain body: {why}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "the document says otherwise than the service:\n{}",
        wrong.join("\n")
    );
}
