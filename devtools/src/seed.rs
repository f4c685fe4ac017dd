//! The demo store of `cargo xtask run`: two sellers and a dozen products,
//! made through the public APIs exactly as a merchant would. Running it again
//! finds what exists and changes nothing.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The sellers' password.
pub const SELLER_PASSWORD: &str = "shopeezy-seller";

/// A demo product: SKU, name, price, stock, tags, attributes.
type DemoProduct = (
    &'static str,
    &'static str,
    i64,
    i64,
    &'static [&'static str],
    &'static [(&'static str, &'static str)],
);

struct Seller {
    username: &'static str,
    name: &'static str,
    products: &'static [DemoProduct],
}

const SELLERS: &[Seller] = &[
    Seller {
        username: "acme",
        name: "Acme Outfitters",
        products: &[
            (
                "ACME-TEE",
                "Organic cotton tee",
                1999,
                120,
                &["apparel", "cotton"],
                &[],
            ),
            (
                "ACME-HOODIE",
                "Zip hoodie",
                5900,
                40,
                &["apparel"],
                &[("sale_percent", "15")],
            ),
            (
                "ACME-CAP",
                "Six-panel cap",
                2400,
                60,
                &["apparel", "accessories"],
                &[],
            ),
            (
                "ACME-SOCKS",
                "Merino socks, 3 pairs",
                1800,
                200,
                &["apparel"],
                &[],
            ),
            (
                "ACME-MUG",
                "Enamel camp mug",
                1500,
                80,
                &["kitchen", "outdoor"],
                &[],
            ),
            (
                "ACME-STICKERS",
                "Sticker pack",
                500,
                500,
                &["accessories"],
                &[],
            ),
        ],
    },
    Seller {
        username: "globex",
        name: "Globex Coffee",
        products: &[
            (
                "GLX-BEANS-1KG",
                "House espresso beans, 1 kg",
                2800,
                90,
                &["coffee"],
                &[],
            ),
            (
                "GLX-TEA",
                "Sencha green tea, 100 g",
                1200,
                70,
                &["tea"],
                &[],
            ),
            (
                "GLX-KETTLE",
                "Gooseneck kettle",
                6900,
                15,
                &["kitchen"],
                &[("sale_percent", "10")],
            ),
            (
                "GLX-GRINDER",
                "Hand grinder",
                8900,
                10,
                &["kitchen", "coffee"],
                &[],
            ),
            (
                "GLX-FILTERS",
                "Paper filters, 100",
                700,
                300,
                &["coffee"],
                &[],
            ),
            (
                "GLX-TRAVEL-MUG",
                "Travel mug",
                2200,
                50,
                &["kitchen", "outdoor"],
                &[],
            ),
        ],
    },
];

/// Makes the demo store exist; the number of its products.
pub fn demo_store(account: &str, host: &str) -> Result<usize> {
    let admin = login(
        account,
        &crate::services::env_or_default("SHOPEEZY_ADMIN_EMAIL"),
        &crate::services::env_or_default("SHOPEEZY_ADMIN_PASSWORD"),
    )?;
    let mut count = 0;
    for seller in SELLERS {
        let email = format!("{}@shopeezy.local", seller.username);
        let registered = post(
            account,
            "/v1/auth/register",
            None,
            &json!({
                "name": seller.name, "username": seller.username, "email": email, "password": SELLER_PASSWORD,
            }),
        )?;
        if !matches!(registered.0, 201 | 409) {
            bail!("registering {email}: {} {}", registered.0, registered.1);
        }
        let mut token = login(account, &email, SELLER_PASSWORD)?;
        let me = get(account, "/v1/users/me", &token)?;
        if me["role"] != "seller" {
            let id = me["id"].as_str().context("no id")?;
            let path = format!("/v1/admin/users/{id}");
            let (code, body) = send(
                "PATCH",
                account,
                &path,
                Some(&admin),
                &json!({"role": "seller"}),
            )?;
            if code != 200 {
                bail!("making {email} a seller: {code} {body}");
            }
            // A token carries its role: a new one acts as a seller on every
            // host at once (an older one only once the role change reaches it).
            token = login(account, &email, SELLER_PASSWORD)?;
        }
        for (sku, name, price, stock, tags, attributes) in seller.products {
            let attributes: serde_json::Map<String, Value> = attributes
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
                .collect();
            let (code, body) = post(
                host,
                "/v1/products",
                Some(&token),
                &json!({
                    "sku": sku, "name": name, "price": price, "currency": "USD", "stock": stock,
                    "tags": tags, "attributes": attributes,
                    "description": format!("{name}, sold by {}.", seller.name),
                }),
            )?;
            if !matches!(code, 201 | 409) {
                bail!("listing {sku}: {code} {body}");
            }
            count += 1;
        }
    }
    Ok(count)
}

fn login(account: &str, email: &str, password: &str) -> Result<String> {
    let (code, body) = post(
        account,
        "/v1/auth/login",
        None,
        &json!({"email": email, "password": password}),
    )?;
    if code != 200 {
        bail!("logging in {email}: {code} {body}");
    }
    Ok(body["access_token"]
        .as_str()
        .context("no access_token")?
        .to_owned())
}

fn get(base: &str, path: &str, token: &str) -> Result<Value> {
    let response = ureq::get(&format!("http://{base}{path}"))
        .set("authorization", &format!("Bearer {token}"))
        .call()?;
    Ok(response.into_json()?)
}

fn post(base: &str, path: &str, token: Option<&str>, body: &Value) -> Result<(u16, Value)> {
    send("POST", base, path, token, body)
}

/// Sends a JSON request; any status is an answer (only a transport failure is an error).
fn send(
    method: &str,
    base: &str,
    path: &str,
    token: Option<&str>,
    body: &Value,
) -> Result<(u16, Value)> {
    let mut request = ureq::request(method, &format!("http://{base}{path}"));
    if let Some(token) = token {
        request = request.set("authorization", &format!("Bearer {token}"));
    }
    match request.send_json(body) {
        Ok(response) => Ok((
            response.status(),
            response.into_json().unwrap_or(Value::Null),
        )),
        Err(ureq::Error::Status(code, response)) => {
            Ok((code, response.into_json().unwrap_or(Value::Null)))
        }
        Err(e) => Err(e.into()),
    }
}

/// The example plugins of the demo store: (installer, component, manifest).
fn demo_plugin_set() -> Vec<(&'static str, &'static str, Value)> {
    vec![
        (
            "admin",
            "attribute-sale",
            json!({"name": "attribute-sale", "hook": "promotion", "priority": 10,
            "config": {"attribute": "sale_percent", "label": "Sale {percent}%", "max_percent": 50}}),
        ),
        (
            "admin",
            "promo-codes",
            json!({"name": "promo-codes", "hook": "promotion", "priority": 20,
            "config": {"codes": [
                {"code": "SAVE10", "percent": 1000, "min_subtotal": 5000, "limit": {"total": 100, "per_customer": 1}},
                {"code": "FIVEOFF", "fixed": 500},
                {"code": "B2G1", "buy": 2, "get": 1, "tag": "coffee"}
            ]}}),
        ),
        (
            "admin",
            "purchase-limits",
            json!({"name": "purchase-limits", "hook": "validation",
            "config": {"max_per_product": 10, "max_per_order": 40, "blocked_tags": ["restricted"]}}),
        ),
        (
            "globex",
            "volume-pricing",
            json!({"name": "coffee-volume", "hook": "pricing",
            "config": {"tiers": [{"min_quantity": 3, "percent_off": 5}, {"min_quantity": 6, "percent_off": 10}], "tags": ["coffee"]}}),
        ),
    ]
}

/// Installs the example plugins on the demo store (a plugin already
/// installed is left as it is); how many are installed.
pub fn demo_plugins(account: &str, host: &str, dir: &std::path::Path) -> Result<usize> {
    let admin = login(
        account,
        &crate::services::env_or_default("SHOPEEZY_ADMIN_EMAIL"),
        &crate::services::env_or_default("SHOPEEZY_ADMIN_PASSWORD"),
    )?;
    let globex = login(account, "globex@shopeezy.local", SELLER_PASSWORD)?;
    let mut count = 0;
    for (who, crate_name, manifest) in demo_plugin_set() {
        let token = if who == "admin" { &admin } else { &globex };
        let path = dir.join(format!("{}.wasm", crate_name.replace('-', "_")));
        let wasm = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let (code, body) = upload(host, token, &manifest, &wasm)?;
        if !matches!(code, 201 | 409) {
            bail!("installing {crate_name}: {code} {body}");
        }
        count += 1;
    }
    Ok(count)
}

/// `POST /v1/plugins` as multipart: the manifest and the component.
fn upload(host: &str, token: &str, manifest: &Value, wasm: &[u8]) -> Result<(u16, Value)> {
    let boundary = "shopeezy-demo-boundary-7c1f";
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"manifest\"\r\nContent-Type: application/json\r\n\r\n{manifest}\r\n").as_bytes());
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"component\"; filename=\"plugin.wasm\"\r\nContent-Type: application/wasm\r\n\r\n").as_bytes());
    body.extend_from_slice(wasm);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let request = ureq::post(&format!("http://{host}/v1/plugins"))
        .set("authorization", &format!("Bearer {token}"))
        .set(
            "content-type",
            &format!("multipart/form-data; boundary={boundary}"),
        );
    match request.send_bytes(&body) {
        Ok(response) => Ok((
            response.status(),
            response.into_json().unwrap_or(Value::Null),
        )),
        Err(ureq::Error::Status(code, response)) => {
            Ok((code, response.into_json().unwrap_or(Value::Null)))
        }
        Err(e) => Err(e.into()),
    }
}
