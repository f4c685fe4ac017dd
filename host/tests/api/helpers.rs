//! `spawn_app(backend)`: the real account service and the real host, each on
//! a fresh database (the testkit's [`StackConfig`]), with one helper per
//! endpoint so that a test reads like a user story, and a few looks behind
//! the API (row counts) where a story needs them.

use std::ops::Deref;
use std::path::PathBuf;

use reqwest::header::CONTENT_TYPE;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use shopeezy_common::db::Db;
use shopeezy_common::shutdown::Shutdown;
use shopeezy_testkit::http::body_of;
use shopeezy_testkit::{Accounts, Stack, StackConfig, TcpProxy};
use uuid::Uuid;

pub use shopeezy_testkit::{Backend, Reply, User, eventually, id_of, send};

/// Sends a body larger than the server accepts. The server may answer and
/// close before it has read the whole body, and the client may then see the
/// connection reset before it reads the answer; only such a transport
/// failure is retried (a bounded number of times). The connection is not
/// kept for later requests, which would otherwise meet it closed.
pub async fn send_oversized(request: RequestBuilder) -> Reply {
    let request = request.header(reqwest::header::CONNECTION, "close");
    for _ in 0..10 {
        let attempt = request.try_clone().expect("a body that can be resent");
        match attempt.send().await {
            Ok(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                let Ok(bytes) = response.bytes().await else {
                    continue;
                };
                return Reply {
                    status,
                    headers,
                    body: body_of(&bytes),
                };
            }
            Err(e) if !e.is_timeout() => continue,
            Err(e) => panic!("the request failed: {e}"),
        }
    }
    panic!("the server never answered an oversized body");
}

/// The clients of both services' REST APIs (the account service's through
/// [`Accounts`], which this derefs to); cheap to clone into tasks.
#[derive(Debug, Clone)]
pub struct Api {
    /// Registers users, signs them in, grants roles; the admin signed in.
    pub accounts: Accounts,
    /// `http://127.0.0.1:<port>` of the host.
    pub host_url: String,
}

impl Deref for Api {
    type Target = Accounts;

    fn deref(&self) -> &Accounts {
        &self.accounts
    }
}

impl Api {
    /// A request to the host.
    pub fn host(&self, method: Method, path: &str) -> RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.host_url))
    }

    /// A request to the host as `user`.
    pub fn host_as(&self, user: &User, method: Method, path: &str) -> RequestBuilder {
        self.host(method, path).bearer_auth(&user.token)
    }

    // ---- catalog -----------------------------------------------------------

    /// `POST /v1/products`.
    pub async fn create_product(&self, user: &User, body: Value) -> Reply {
        send(self.host_as(user, Method::POST, "/v1/products").json(&body)).await
    }

    /// A new product of `seller` (asserting 201), as the API answered it.
    pub async fn product(&self, seller: &User, name: &str, price: i64, stock: i64) -> Value {
        let sku = format!("sku-{}", Uuid::new_v4().simple());
        let reply = self
            .create_product(
                seller,
                json!({"sku": sku, "name": name, "price": price, "currency": "USD", "stock": stock}),
            )
            .await;
        reply.expect(201);
        reply.body
    }

    /// `GET /v1/products/{id}`.
    pub async fn get_product(&self, id: Uuid) -> Reply {
        send(self.host(Method::GET, &format!("/v1/products/{id}"))).await
    }

    /// The stock of a product on sale, as anyone sees it.
    pub async fn stock_of(&self, id: Uuid) -> i64 {
        let reply = self.get_product(id).await;
        reply.expect(200);
        reply.body["stock"].as_i64().unwrap()
    }

    /// `GET /v1/products?{query}`.
    pub async fn list_products(&self, query: &str) -> Reply {
        send(self.host(Method::GET, &format!("/v1/products?{query}"))).await
    }

    /// The ids of `GET /v1/products?{query}` (one page, asserting 200).
    pub async fn listed_ids(&self, query: &str) -> Vec<Uuid> {
        let reply = self.list_products(query).await;
        reply.expect(200);
        reply.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(id_of)
            .collect()
    }

    /// `PATCH /v1/products/{id}`.
    pub async fn patch_product(&self, user: &User, id: Uuid, body: Value) -> Reply {
        send(
            self.host_as(user, Method::PATCH, &format!("/v1/products/{id}"))
                .json(&body),
        )
        .await
    }

    /// `DELETE /v1/products/{id}`.
    pub async fn delete_product(&self, user: &User, id: Uuid) -> Reply {
        send(self.host_as(user, Method::DELETE, &format!("/v1/products/{id}"))).await
    }

    /// `PUT /v1/products/{id}/stock`.
    pub async fn set_stock(&self, user: &User, id: Uuid, stock: i64) -> Reply {
        send(
            self.host_as(user, Method::PUT, &format!("/v1/products/{id}/stock"))
                .json(&json!({"stock": stock})),
        )
        .await
    }

    // ---- cart ----------------------------------------------------------------

    /// `GET /v1/cart`.
    pub async fn cart(&self, user: &User) -> Reply {
        send(self.host_as(user, Method::GET, "/v1/cart")).await
    }

    /// The cart's lines as `(product_id, quantity)` (asserting 200).
    pub async fn cart_lines(&self, user: &User) -> Vec<(Uuid, i64)> {
        let reply = self.cart(user).await;
        reply.expect(200);
        reply.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    Uuid::parse_str(l["product_id"].as_str().unwrap()).unwrap(),
                    l["quantity"].as_i64().unwrap(),
                )
            })
            .collect()
    }

    /// `PUT /v1/cart/items/{product_id}` with `{quantity}`.
    pub async fn put_item(&self, user: &User, product_id: Uuid, quantity: i64) -> Reply {
        send(
            self.host_as(user, Method::PUT, &format!("/v1/cart/items/{product_id}"))
                .json(&json!({"quantity": quantity})),
        )
        .await
    }

    /// `DELETE /v1/cart/items/{product_id}`.
    pub async fn remove_item(&self, user: &User, product_id: Uuid) -> Reply {
        send(self.host_as(
            user,
            Method::DELETE,
            &format!("/v1/cart/items/{product_id}"),
        ))
        .await
    }

    /// `DELETE /v1/cart`.
    pub async fn clear_cart(&self, user: &User) -> Reply {
        send(self.host_as(user, Method::DELETE, "/v1/cart")).await
    }

    /// `POST /v1/cart/codes`.
    pub async fn add_code(&self, user: &User, code: &str) -> Reply {
        send(
            self.host_as(user, Method::POST, "/v1/cart/codes")
                .json(&json!({"code": code})),
        )
        .await
    }

    /// `DELETE /v1/cart/codes/{code}`.
    pub async fn remove_code(&self, user: &User, code: &str) -> Reply {
        send(self.host_as(user, Method::DELETE, &format!("/v1/cart/codes/{code}"))).await
    }

    // ---- checkout and orders -------------------------------------------------

    /// `POST /v1/checkout` with an `Idempotency-Key` (when given) and a JSON
    /// body (when given).
    pub async fn checkout(&self, user: &User, key: Option<&str>, body: Option<Value>) -> Reply {
        let mut request = self.host_as(user, Method::POST, "/v1/checkout");
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        send(request).await
    }

    /// A checkout with a fresh key that must succeed: the order.
    pub async fn place_order(&self, user: &User) -> Value {
        let key = Uuid::new_v4().to_string();
        let reply = self.checkout(user, Some(&key), None).await;
        reply.expect(201);
        reply.body
    }

    /// `GET /v1/orders/{id}`.
    pub async fn get_order(&self, user: &User, id: Uuid) -> Reply {
        send(self.host_as(user, Method::GET, &format!("/v1/orders/{id}"))).await
    }

    /// `GET /v1/orders?{query}`.
    pub async fn list_orders(&self, user: &User, query: &str) -> Reply {
        send(self.host_as(user, Method::GET, &format!("/v1/orders?{query}"))).await
    }

    /// `POST /v1/orders/{id}/cancel`.
    pub async fn cancel_order(&self, user: &User, id: Uuid) -> Reply {
        send(self.host_as(user, Method::POST, &format!("/v1/orders/{id}/cancel"))).await
    }

    /// `GET /v1/admin/orders?{query}`.
    pub async fn admin_orders(&self, user: &User, query: &str) -> Reply {
        send(self.host_as(user, Method::GET, &format!("/v1/admin/orders?{query}"))).await
    }

    /// `POST /v1/admin/orders/{id}/status` with `{status}`.
    pub async fn move_order(&self, user: &User, id: Uuid, status: &str) -> Reply {
        send(
            self.host_as(user, Method::POST, &format!("/v1/admin/orders/{id}/status"))
                .json(&json!({"status": status})),
        )
        .await
    }
}

/// Both services running for one test, on their own databases.
pub struct TestApp {
    pub api: Api,
    /// The host's database, for counting rows behind the API.
    pub db: Db,
    /// The proxy the host reaches the account service through, when asked for.
    pub auth_proxy: Option<TcpProxy>,
    /// The proxy the host reaches PostgreSQL through, when asked for.
    pub db_proxy: Option<TcpProxy>,
    /// The folder of the SQLite files (embedded backend).
    pub dir: PathBuf,
    /// The services, stopped (and their data removed) when dropped.
    stack: Stack,
}

impl Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

/// How a test wants its app.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Put a [`TcpProxy`] between the host and the account's gRPC server.
    pub auth_through_proxy: bool,
    /// Put a [`TcpProxy`] between the host and PostgreSQL (production backend).
    pub database_through_proxy: bool,
    /// Where the SQLite files go (embedded backend), instead of a fresh
    /// temporary folder; the caller keeps it.
    pub sqlite_dir: Option<&'static str>,
    /// Changes the host's configuration before it starts (e.g. plugin limits).
    pub configure_host: Option<fn(&mut shopeezy_host::Config)>,
}

/// Both services on `backend`; `None` when the backend's servers cannot be
/// reached (the test is skipped; the testkit said why).
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, Options::default()).await
}

/// As [`spawn_app`], with options.
pub async fn spawn_app_with(backend: Backend, options: Options) -> Option<TestApp> {
    let mut config = StackConfig::new(backend).await?;
    config.auth_through_proxy = options.auth_through_proxy;
    config.database_through_proxy = options.database_through_proxy;
    if let (Backend::Embedded, Some(sqlite_dir)) = (backend, options.sqlite_dir) {
        config.host.database_url = format!("sqlite://{sqlite_dir}/host.db");
    }
    if let Some(configure) = options.configure_host {
        configure(&mut config.host);
    }
    let stack = config.start().await;
    Some(TestApp {
        api: Api {
            accounts: stack.accounts.clone(),
            host_url: stack.hosts[0].url.clone(),
        },
        db: stack.host_db().clone(),
        auth_proxy: stack.auth_proxy.clone(),
        db_proxy: stack.db_proxy.clone(),
        dir: stack.storage.dir().to_owned(),
        stack,
    })
}

/// Another host process on the same database and account service, as a
/// second replica behind a load balancer would be; stopped when dropped.
pub struct Replica {
    pub api: Api,
    shutdown: Shutdown,
}

impl Deref for Replica {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

impl TestApp {
    /// Stops the account service (and waits until it has).
    pub async fn stop_account(&mut self) {
        self.stack.stop_account().await;
    }

    /// Starts the account service again: same database, key and ports.
    pub async fn start_account(&mut self) {
        self.stack.start_account().await;
    }

    /// Starts a second host on the same database.
    pub async fn replica(&self) -> Replica {
        let host = shopeezy_testkit::host::start(self.stack.host_config.clone()).await;
        let mut api = self.api.clone();
        api.host_url = host.url;
        Replica {
            api,
            shutdown: host.shutdown,
        }
    }

    /// A `SELECT COUNT(*) …` on the host's database, with one optional text
    /// parameter bound as `$1`.
    pub async fn count(&self, sql: &str, param: Option<&str>) -> i64 {
        shopeezy_common::with_db!(&self.db, pool => {
            let sql = shopeezy_common::db::dialect::placeholders(pool, sql);
            let mut query = sqlx::query_scalar::<_, i64>(&sql);
            if let Some(p) = param {
                query = query.bind(p.to_owned());
            }
            query.fetch_one(pool).await.unwrap()
        })
    }

    /// Every order row.
    pub async fn order_rows(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM orders", None).await
    }

    /// Every order-line row.
    pub async fn order_item_rows(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM order_items", None).await
    }

    /// Every outbox row.
    pub async fn outbox_rows(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM outbox", None).await
    }

    /// Outbox rows with this routing key (e.g. `order.placed`).
    pub async fn outbox_rows_with_key(&self, routing_key: &str) -> i64 {
        self.count(
            "SELECT COUNT(*) FROM outbox WHERE routing_key = $1",
            Some(routing_key),
        )
        .await
    }

    /// Outbox rows with this routing key about one order.
    pub async fn order_events(&self, order_id: Uuid, routing_key: &str) -> i64 {
        let sql = "SELECT COUNT(*) FROM outbox WHERE routing_key = $1 AND subject = $2";
        let subject = format!("orders/{order_id}");
        shopeezy_common::with_db!(&self.db, pool => sqlx::query_scalar::<_, i64>(&shopeezy_common::db::dialect::placeholders(pool, sql))
            .bind(routing_key)
            .bind(&subject)
            .fetch_one(pool)
            .await
            .unwrap())
    }

    /// The CloudEvents documents of one order's events with this routing key,
    /// oldest first.
    pub async fn order_event_documents(&self, order_id: Uuid, routing_key: &str) -> Vec<Value> {
        let sql = "SELECT payload FROM outbox WHERE routing_key = $1 AND subject = $2 ORDER BY seq";
        let subject = format!("orders/{order_id}");
        let rows: Vec<sqlx::types::Json<Value>> = shopeezy_common::with_db!(&self.db, pool => sqlx::query_scalar(&shopeezy_common::db::dialect::placeholders(pool, sql))
            .bind(routing_key)
            .bind(&subject)
            .fetch_all(pool)
            .await
            .unwrap());
        rows.into_iter().map(|j| j.0).collect()
    }

    /// Every product row (deleted ones too).
    pub async fn product_rows(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM products", None).await
    }
}

/// Each `(user, key)` checks out at the same moment (released together by
/// a barrier); the replies in the same order.
pub async fn check_out_at_once(api: &Api, who: &[(User, String)]) -> Vec<Reply> {
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(who.len()));
    let tasks: Vec<_> = who
        .iter()
        .map(|(user, key)| {
            let (api, user, key, start) = (api.clone(), user.clone(), key.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                api.checkout(&user, Some(&key), None).await
            })
        })
        .collect();
    let mut replies = Vec::with_capacity(tasks.len());
    for task in tasks {
        replies.push(task.await.unwrap());
    }
    replies
}

/// Every user checks out at the same moment, each with a key of its own.
pub async fn check_out_all_at_once(api: &Api, users: &[User]) -> Vec<Reply> {
    let who: Vec<(User, String)> = users
        .iter()
        .map(|u| (u.clone(), format!("race-{}", Uuid::new_v4())))
        .collect();
    check_out_at_once(api, &who).await
}

/// Asserts that none of `replies` is a 5xx, showing the first one that is.
#[track_caller]
pub fn assert_no_5xx(replies: &[Reply]) {
    if let Some(r) = replies.iter().find(|r| r.status.is_server_error()) {
        let count = replies
            .iter()
            .filter(|r| r.status.is_server_error())
            .count();
        panic!(
            "{count} answers were 5xx; the first: {} {}",
            r.status, r.body
        );
    }
}

/// The media type of a JSON body, for raw requests.
pub fn json_body(request: RequestBuilder, body: impl Into<String>) -> RequestBuilder {
    request
        .header(CONTENT_TYPE, "application/json")
        .body(body.into())
}

/// `value` without its `created_at` and `updated_at` members, to compare what
/// a change must not touch apart from when it was written.
pub fn without_times(value: &Value) -> Value {
    let mut value = value.clone();
    if let Some(object) = value.as_object_mut() {
        object.remove("created_at");
        object.remove("updated_at");
    }
    value
}
