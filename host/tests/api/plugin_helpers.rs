//! What the plugin tests share: the real components built from `plugins/`
//! (`cargo xtask plugins`), one helper per plugin endpoint, products with
//! tags and attributes, and the check that an order charged what the cart
//! view showed.

use std::path::PathBuf;

use reqwest::Method;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};
use shopeezy_testkit::servers;
use uuid::Uuid;

use crate::helpers::{Api, Options, Reply, User, send};

/// The folder the components are in: `SHOPEEZY_TEST_PLUGINS_DIR`, else
/// `<repo>/plugins/target/wasm32-wasip2/release`.
pub fn plugins_dir() -> PathBuf {
    match std::env::var_os("SHOPEEZY_TEST_PLUGINS_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../plugins/target/wasm32-wasip2/release"),
    }
}

/// The bytes of the component of crate `name` (e.g. `attribute_sale`).
/// When it was not built: under CI the test fails; otherwise it is skipped
/// (`None`) with a `SKIPPED` line.
pub fn component(name: &str) -> Option<Vec<u8>> {
    let path = plugins_dir().join(format!("{name}.wasm"));
    match std::fs::read(&path) {
        Ok(bytes) => Some(bytes),
        Err(e) => servers::skip(
            &format!(
                "plugin components not built; run cargo xtask plugins ({}: {e})",
                path.display()
            ),
            &format!(
                "plugin component {} is required under CI=true ({e}); run cargo xtask plugins",
                path.display()
            ),
        ),
    }
}

/// Every component of `names`, in order; `None` (skipped) when one is missing.
pub fn components<const N: usize>(names: [&str; N]) -> Option<[Vec<u8>; N]> {
    let mut out = Vec::with_capacity(N);
    for name in names {
        out.push(component(name)?);
    }
    out.try_into().ok()
}

/// Options whose host plugin settings `configure` changes.
pub fn host_options(configure: fn(&mut shopeezy_host::Config)) -> Options {
    Options {
        configure_host: Some(configure),
        ..Options::default()
    }
}

/// A manifest: `{name, hook}` plus the members of `extra` (an object).
pub fn manifest(name: &str, hook: &str, extra: Value) -> Value {
    let mut m = json!({"name": name, "hook": hook});
    if let (Some(m), Some(extra)) = (m.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
    m
}

/// A multipart upload of `manifest` (sent as given) and `wasm`.
pub fn upload_form(manifest: &str, wasm: &[u8]) -> Form {
    Form::new()
        .part(
            "manifest",
            Part::text(manifest.to_owned())
                .mime_str("application/json")
                .unwrap(),
        )
        .part(
            "component",
            Part::bytes(wasm.to_vec())
                .file_name("plugin.wasm")
                .mime_str("application/wasm")
                .unwrap(),
        )
}

impl Api {
    /// `POST /v1/plugins` with a manifest and a component.
    pub async fn upload_plugin(&self, user: &User, manifest: &Value, wasm: &[u8]) -> Reply {
        send(
            self.host_as(user, Method::POST, "/v1/plugins")
                .multipart(upload_form(&manifest.to_string(), wasm)),
        )
        .await
    }

    /// Installs a plugin (asserting 201): the plugin as answered.
    pub async fn install_plugin(
        &self,
        user: &User,
        name: &str,
        hook: &str,
        wasm: &[u8],
        extra: Value,
    ) -> Value {
        let reply = self
            .upload_plugin(user, &manifest(name, hook, extra), wasm)
            .await;
        reply.expect(201);
        assert_eq!(
            reply.header("location").map(str::to_owned),
            Some(format!("/v1/plugins/{}", reply.id()))
        );
        reply.body
    }

    /// `GET /v1/plugins/{id}`.
    pub async fn get_plugin(&self, user: &User, id: Uuid) -> Reply {
        send(self.host_as(user, Method::GET, &format!("/v1/plugins/{id}"))).await
    }

    /// `GET /v1/plugins` (one page of 100).
    pub async fn list_plugins(&self, user: &User) -> Reply {
        send(self.host_as(user, Method::GET, "/v1/plugins?limit=100")).await
    }

    /// The ids `GET /v1/plugins` lists (asserting 200).
    pub async fn listed_plugins(&self, user: &User) -> Vec<Uuid> {
        let reply = self.list_plugins(user).await;
        reply.expect(200);
        reply.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(crate::helpers::id_of)
            .collect()
    }

    /// `PATCH /v1/plugins/{id}`.
    pub async fn patch_plugin(&self, user: &User, id: Uuid, body: Value) -> Reply {
        send(
            self.host_as(user, Method::PATCH, &format!("/v1/plugins/{id}"))
                .json(&body),
        )
        .await
    }

    /// `PUT /v1/plugins/{id}/component` with the raw `.wasm` as the body.
    pub async fn replace_component(&self, user: &User, id: Uuid, wasm: &[u8]) -> Reply {
        send(
            self.host_as(user, Method::PUT, &format!("/v1/plugins/{id}/component"))
                .header("content-type", "application/wasm")
                .body(wasm.to_vec()),
        )
        .await
    }

    /// `DELETE /v1/plugins/{id}`.
    pub async fn delete_plugin(&self, user: &User, id: Uuid) -> Reply {
        send(self.host_as(user, Method::DELETE, &format!("/v1/plugins/{id}"))).await
    }

    /// `POST /v1/plugins/{id}/dry-run` with `{cart}`.
    pub async fn dry_run(&self, user: &User, id: Uuid, cart: Value) -> Reply {
        send(
            self.host_as(user, Method::POST, &format!("/v1/plugins/{id}/dry-run"))
                .json(&json!({ "cart": cart })),
        )
        .await
    }

    /// A new product of `seller` with tags and attributes (asserting 201).
    pub async fn product_with(
        &self,
        seller: &User,
        name: &str,
        price: i64,
        stock: i64,
        tags: &[&str],
        attributes: Value,
    ) -> Value {
        let sku = format!("sku-{}", Uuid::new_v4().simple());
        let reply = self
            .create_product(
                seller,
                json!({
                    "sku": sku, "name": name, "price": price, "currency": "USD",
                    "stock": stock, "tags": tags, "attributes": attributes,
                }),
            )
            .await;
        reply.expect(201);
        reply.body
    }

    /// The cart view (asserting 200).
    pub async fn cart_view(&self, user: &User) -> Value {
        let reply = self.cart(user).await;
        reply.expect(200);
        reply.body
    }
}

/// A cart view's or an order's line of `product`.
#[track_caller]
pub fn line_of(priced: &Value, product: Uuid) -> &Value {
    priced["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["product_id"] == product.to_string())
        .unwrap_or_else(|| panic!("no line of {product} in {priced}"))
}

/// The labels of a line's adjustments, in order.
pub fn labels(adjustments: &Value) -> Vec<String> {
    adjustments
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["label"].as_str().unwrap().to_owned())
        .collect()
}

/// The violations of a cart view with this `code`.
pub fn violations_with<'a>(cart: &'a Value, code: &str) -> Vec<&'a Value> {
    cart["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["code"] == code)
        .collect()
}

/// Asserts that `order` charged exactly what the cart view `shown` showed:
/// each line's quantity, unit price, total and adjustments, the order's
/// adjustments and the totals.
#[track_caller]
pub fn assert_charged_as_shown(order: &Value, shown: &Value) {
    let shown_items = shown["items"].as_array().unwrap();
    let order_items = order["items"].as_array().unwrap();
    assert_eq!(
        order_items.len(),
        shown_items.len(),
        "order {order} vs cart {shown}"
    );
    for item in shown_items {
        let product = Uuid::parse_str(item["product_id"].as_str().unwrap()).unwrap();
        let charged = line_of(order, product);
        for member in ["quantity", "unit_price", "line_total", "adjustments"] {
            assert_eq!(
                charged[member], item[member],
                "line {product}: {member} charged differs from shown; order {order}, cart {shown}"
            );
        }
    }
    for member in [
        "adjustments",
        "subtotal",
        "discount_total",
        "total",
        "currency",
    ] {
        assert_eq!(
            order[member], shown[member],
            "{member} charged differs from shown; order {order}, cart {shown}"
        );
    }
}

/// Asserts that `order` records exactly `plugins` (each `(plugin, outcome)`,
/// in running order) with their id, name and version.
#[track_caller]
pub fn assert_ran(order: &Value, plugins: &[(&Value, &str)]) {
    let ran = order["plugins"].as_array().unwrap();
    assert_eq!(ran.len(), plugins.len(), "plugins of {order}");
    for (entry, (plugin, outcome)) in ran.iter().zip(plugins) {
        assert_eq!(entry["id"], plugin["id"], "{order}");
        assert_eq!(entry["name"], plugin["name"], "{order}");
        assert_eq!(entry["version"], plugin["version"], "{order}");
        assert_eq!(entry["outcome"], *outcome, "{order}");
    }
}
