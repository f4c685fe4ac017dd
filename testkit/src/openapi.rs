//! What the services' OpenAPI tests share: the document and the docs page
//! as a client gets them, the rules every document follows, and calls that
//! check what the document says against what the service answers. Test
//! support: a failed check panics.

#![allow(clippy::unwrap_used)]

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

/// The document, from the service.
pub async fn document(client: &Client, base: &str) -> Value {
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
pub async fn check_docs_page(client: &Client, base: &str) {
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
pub fn asset_refs(html: &str) -> Vec<String> {
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
pub struct Op {
    pub method: Method,
    pub path: String,
    pub value: Value,
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.method, self.path)
    }
}

impl Op {
    pub fn key(&self) -> String {
        self.to_string()
    }

    pub fn responses(&self) -> serde_json::Map<String, Value> {
        self.value["responses"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    pub fn documents(&self, status: &str) -> bool {
        self.value["responses"].get(status).is_some()
    }

    /// The bearer requirement's roles, `None` without one.
    pub fn bearer(&self) -> Option<Vec<String>> {
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

    pub fn has_security(&self) -> bool {
        self.bearer().is_some()
    }

    pub fn roles(&self) -> Vec<String> {
        self.bearer().unwrap_or_default()
    }
}

/// Every operation of the document.
pub fn operations(doc: &Value) -> Vec<Op> {
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
pub fn check_rules(doc: &Value, role_operations: &[(&str, &[&str])], not_json_bodies: &[&str]) {
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
pub fn fill_path(path: &str) -> String {
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

pub fn header_of(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// An answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// Whether this is a problem+json answer of `status` and `code`.
    pub fn is_problem(&self, status: u16, code: &str) -> Result<(), String> {
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

pub async fn call(request: reqwest::RequestBuilder) -> Answer {
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
