//! The demo store of `cargo xtask run`: two sellers and a dozen products,
//! made through the public APIs exactly as a merchant would. Running it again
//! finds what exists and changes nothing.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The sellers' password.
pub const SELLER_PASSWORD: &str = "shopeezy-seller";

struct Seller {
    username: &'static str,
    name: &'static str,
    products: &'static [(
        &'static str,
        &'static str,
        i64,
        i64,
        &'static [&'static str],
        &'static [(&'static str, &'static str)],
    )],
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
        &super::env_or_default("SHOPEEZY_ADMIN_EMAIL"),
        &super::env_or_default("SHOPEEZY_ADMIN_PASSWORD"),
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
        let token = login(account, &email, SELLER_PASSWORD)?;
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
