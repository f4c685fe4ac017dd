//! The API reference as a user gets it from the running account service:
//! the `/docs` page loads everything from the service itself, and
//! `/openapi.json` documents every error the way the service answers it
//! (problem+json, 401 on every operation that takes a token, 403 where a
//! role is needed, 415 where a JSON body is read), which is then checked
//! against the service.
//!
//! Self-contained on purpose: of the helpers only `spawn_app`, the client,
//! the base URL and the sign-up and sign-in calls are used.

use reqwest::header::CONTENT_TYPE;
use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

use crate::helpers::{Backend, spawn_app};

/// The operations that need a role, with the roles the document must name
/// (the `Admin` extractor).
const ROLE_OPERATIONS: &[(&str, &[&str])] = &[
    ("GET /v1/admin/users", &["admin"]),
    ("GET /v1/admin/users/{id}", &["admin"]),
    ("PATCH /v1/admin/users/{id}", &["admin"]),
];

/// The operations with a body the shared JSON extractor does not read.
const NOT_JSON_BODIES: &[&str] = &[];

#[tokio::test]
async fn the_docs_page_loads_everything_from_the_service() {
    let Some(app) = spawn_app(Backend::Embedded).await else {
        return;
    };
    check_docs_page(&app.client, &app.address).await;
}

#[tokio::test]
async fn the_document_follows_the_error_rules() {
    let Some(app) = spawn_app(Backend::Embedded).await else {
        return;
    };
    let doc = document(&app.client, &app.address).await;
    check_rules(&doc, ROLE_OPERATIONS, NOT_JSON_BODIES);
}

#[tokio::test]
async fn documented_401_403_and_415_are_what_the_service_answers() {
    let Some(app) = spawn_app(Backend::Embedded).await else {
        return;
    };
    let (client, base) = (&app.client, app.address.as_str());
    let doc = document(client, base).await;
    let admin = app.login_as_admin().await;
    let mut wrong = Vec::new();
    for (n, op) in operations(&doc).into_iter().enumerate() {
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
            // A customer (a new one each time: some calls sign it out or
            // delete it): 403 exactly where a role is documented.
            let customer = app.register_user(&format!("docs-reader-{n}")).await;
            let token = app.login_as(&customer).await;
            let reply = call(client.request(op.method.clone(), &url).bearer_auth(&token)).await;
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
                request = request.bearer_auth(&admin);
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

// ---- what follows is the same in the host's tests ------------------------

/// The document, from the service.
async fn document(client: &Client, base: &str) -> Value {
    let response = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.json().await.unwrap()
}

/// `/docs` (after its redirect) is an HTML page whose scripts and
/// stylesheets are all relative and all served, non-empty, by the service;
/// the page's configuration points at the service's own document.
async fn check_docs_page(client: &Client, base: &str) {
    let response = client.get(format!("{base}/docs")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let page_url = response.url().clone();
    assert!(
        page_url.as_str().starts_with(base),
        "the page stays on the service: {page_url}"
    );
    let content_type = header_of(response.headers(), "content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/html"), "{content_type}");
    let html = response.text().await.unwrap();
    let assets = asset_refs(&html);
    assert!(
        assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")),
        "the page has scripts and stylesheets: {assets:?}"
    );
    let mut scripts = String::new();
    for asset in &assets {
        assert!(
            !asset.contains("//") && !asset.starts_with("data:"),
            "the page loads {asset} from elsewhere than the service"
        );
        let url = page_url.join(asset).unwrap();
        let response = client.get(url.clone()).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        let body = response.bytes().await.unwrap();
        assert!(!body.is_empty(), "{url} is empty");
        if asset.ends_with(".js") {
            scripts.push_str(&String::from_utf8_lossy(&body));
        }
    }
    assert!(
        scripts.contains("\"/openapi.json\""),
        "the page reads the service's own document"
    );
}

/// The `src` of every `<script>` and the `href` of every `<link>` of a page.
fn asset_refs(html: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for (tag, attribute) in [("<script", "src="), ("<link", "href=")] {
        for part in html.split(tag).skip(1) {
            let element = &part[..part.find('>').unwrap_or(part.len())];
            let Some(at) = element.find(attribute) else {
                continue;
            };
            let value = &element[at + attribute.len()..];
            let quote = value.chars().next().unwrap_or('"');
            let value = value.trim_start_matches(quote);
            refs.push(value[..value.find(quote).unwrap_or(value.len())].to_owned());
        }
    }
    refs
}

/// One operation of the document.
struct Op {
    method: Method,
    path: String,
    value: Value,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

impl Op {
    fn key(&self) -> String {
        self.to_string()
    }

    fn responses(&self) -> serde_json::Map<String, Value> {
        self.value["responses"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    fn documents(&self, status: &str) -> bool {
        self.value["responses"].get(status).is_some()
    }

    /// The bearer requirement's roles, `None` without one.
    fn bearer(&self) -> Option<Vec<String>> {
        self.value["security"].as_array()?.iter().find_map(|req| {
            req.get("bearer").map(|roles| {
                roles
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.as_str().map(str::to_owned))
                    .collect()
            })
        })
    }

    fn has_security(&self) -> bool {
        self.bearer().is_some()
    }

    fn roles(&self) -> Vec<String> {
        self.bearer().unwrap_or_default()
    }
}

/// Every operation of the document.
fn operations(doc: &Value) -> Vec<Op> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, value) in item.as_object().expect("a path item") {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            if value.get("responses").is_some() {
                ops.push(Op {
                    method,
                    path: path.clone(),
                    value: value.clone(),
                });
            }
        }
    }
    ops
}

/// Every rule of the document, with every breach listed at once.
fn check_rules(doc: &Value, role_operations: &[(&str, &[&str])], not_json_bodies: &[&str]) {
    let ops = operations(doc);
    let mut wrong = Vec::new();
    assert!(
        doc["components"]["schemas"]["Problem"].is_object(),
        "the Problem schema is a component"
    );
    for op in &ops {
        for (status, response) in op.responses() {
            // A readiness report is the same JSON at 200 and 503.
            if !(status.starts_with('4') || status.starts_with('5')) || op.key() == "GET /readyz" {
                continue;
            }
            let content = response["content"].as_object().cloned().unwrap_or_default();
            let types: Vec<_> = content.keys().cloned().collect();
            if types != ["application/problem+json"] {
                wrong.push(format!("{op} {status}: content {types:?}"));
            } else if content["application/problem+json"]["schema"]["$ref"]
                != "#/components/schemas/Problem"
            {
                wrong.push(format!("{op} {status}: not the Problem schema"));
            }
        }
        if op.has_security() && !op.documents("401") {
            wrong.push(format!("{op}: takes a token but documents no 401"));
        }
        let body = &op.value["requestBody"];
        if !body.is_null() {
            let json =
                body["required"] == true && body["content"].get("application/json").is_some();
            let exempt = not_json_bodies.contains(&op.key().as_str());
            if json && exempt {
                wrong.push(format!("{op}: a JSON body, but listed as not JSON"));
            }
            if !json && !exempt {
                wrong.push(format!(
                    "{op}: a body that is not required JSON, and not listed so"
                ));
            }
            for status in ["400", "415", "422"] {
                if json && !op.documents(status) {
                    wrong.push(format!("{op}: a JSON body but no {status}"));
                }
            }
        }
        let expected_roles = role_operations
            .iter()
            .find(|(key, _)| *key == op.key())
            .map(|(_, roles)| roles.to_vec())
            .unwrap_or_default();
        if op.roles() != expected_roles {
            wrong.push(format!(
                "{op}: documents roles {:?}, the service needs {expected_roles:?}",
                op.roles()
            ));
        }
        if !expected_roles.is_empty() && !op.documents("403") {
            wrong.push(format!("{op}: needs a role but documents no 403"));
        }
    }
    for (key, _) in role_operations {
        if !ops.iter().any(|op| op.key() == *key) {
            wrong.push(format!("{key} is not documented"));
        }
    }
    for (path, media) in [
        ("/healthz", "application/json"),
        ("/readyz", "application/json"),
        ("/metrics", "text/plain"),
    ] {
        let ok = &doc["paths"][path]["get"]["responses"]["200"]["content"];
        if !ok
            .as_object()
            .is_some_and(|c| c.keys().any(|k| k.starts_with(media)))
        {
            wrong.push(format!("GET {path}: no 200 of {media}: {ok}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} breaches of the document's rules:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// A path with every parameter replaced by a new UUID.
fn fill_path(path: &str) -> String {
    let mut filled = String::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        filled.push_str(&rest[..open]);
        filled.push_str(&Uuid::new_v4().to_string());
        rest = &rest[rest[open..]
            .find('}')
            .map_or(rest.len(), |close| open + close + 1)..];
    }
    filled.push_str(rest);
    filled
}

fn header_of(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// An answer, read whole.
struct Answer {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// Whether this is a problem+json answer of `status` and `code`.
    fn is_problem(&self, status: u16, code: &str) -> Result<(), String> {
        let content_type = self.header("content-type").unwrap_or_default();
        if self.status.as_u16() != status
            || content_type != "application/problem+json"
            || self.code() != code
        {
            return Err(format!(
                "expected {status} `{code}` problem+json, got {} {content_type}: {}",
                self.status, self.body
            ));
        }
        Ok(())
    }
}

async fn call(request: reqwest::RequestBuilder) -> Answer {
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Answer {
        status,
        headers,
        body,
    }
}
