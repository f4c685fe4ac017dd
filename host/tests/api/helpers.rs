//! `spawn_app(backend)`: the real account service and the real host, each on
//! a fresh database, with one helper per endpoint so that a test reads like a
//! user story, and a few looks behind the API (row counts) where a story
//! needs them.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use shopeezy_common::db::Db;
use shopeezy_common::shutdown::Shutdown;
use shopeezy_common::testing::{self, TcpProxy, TestDatabase};
use uuid::Uuid;

/// The admin every test's account service is configured to make exist.
pub const ADMIN_EMAIL: &str = "admin@shopeezy.test";
/// That admin's password.
pub const ADMIN_PASSWORD: &str = "admin-password-1";
/// The password of every user a test registers.
pub const PASSWORD: &str = "correct-horse-battery";

/// Which backends both services run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite files in a fresh folder, revocation in-process, no Redis.
    Embedded,
    /// Fresh PostgreSQL databases and Redis under a key prefix of its own.
    Production,
}

/// A folder removed when the app is dropped.
#[derive(Debug)]
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("shopeezy-host-test-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct User {
    pub id: Uuid,
    pub token: String,
}

/// One HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body as JSON (`Null` when empty, a string when not JSON).
    pub body: Value,
}

impl Reply {
    /// A header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The problem's `code` (empty when there is none).
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// The `id` member of the body.
    pub fn id(&self) -> Uuid {
        id_of(&self.body)
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.body
        );
        self
    }

    /// Asserts an RFC 9457 problem answer with this status and `code`.
    #[track_caller]
    pub fn expect_problem(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        self.expect_some_problem();
        assert_eq!(self.code(), code, "problem code; body: {}", self.body);
        self
    }

    /// Asserts a 4xx problem answer with some `code` (the status is the
    /// service's choice).
    #[track_caller]
    pub fn expect_client_error(&self) -> &Self {
        assert!(
            self.status.is_client_error(),
            "expected a 4xx, got {}: {}",
            self.status,
            self.body
        );
        self.expect_some_problem();
        self
    }

    #[track_caller]
    fn expect_some_problem(&self) {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "a problem's media type; status {}, body: {}",
            self.status,
            self.body
        );
        assert_eq!(
            self.body["status"].as_u64(),
            Some(u64::from(self.status.as_u16())),
            "{}",
            self.body
        );
        for member in ["type", "title", "detail", "code"] {
            assert!(
                self.body[member].as_str().is_some_and(|s| !s.is_empty()),
                "problem member {member} missing: {}",
                self.body
            );
        }
    }
}

/// The `id` member of a JSON object, as a UUID.
#[track_caller]
pub fn id_of(value: &Value) -> Uuid {
    value["id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(|| panic!("no id in {value}"))
}

/// Sends a request and reads its answer whole.
pub async fn send(request: RequestBuilder) -> Reply {
    let response = request
        .send()
        .await
        .expect("the request reaches the server");
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.expect("the answer is read whole");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Reply {
        status,
        headers,
        body,
    }
}

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
                    body: serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                        Value::String(String::from_utf8_lossy(&bytes).into_owned())
                    }),
                };
            }
            Err(e) if !e.is_timeout() => continue,
            Err(e) => panic!("the request failed: {e}"),
        }
    }
    panic!("the server never answered an oversized body");
}

/// The clients of both services' REST APIs; cheap to clone into tasks.
#[derive(Debug, Clone)]
pub struct Api {
    pub client: reqwest::Client,
    /// `http://127.0.0.1:<port>` of the host.
    pub host_url: String,
    /// `http://127.0.0.1:<port>` of the account service.
    pub account_url: String,
    /// The platform admin, signed in.
    pub admin: User,
}

static USER_SEQ: AtomicU64 = AtomicU64::new(0);

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

    // ---- account service -------------------------------------------------

    /// Registers a new customer and signs it in.
    pub async fn customer(&self) -> User {
        let n = USER_SEQ.fetch_add(1, Ordering::Relaxed);
        let username = format!("u{n}-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let email = format!("{username}@example.com");
        send(
            self.client
                .post(format!("{}/v1/auth/register", self.account_url))
                .json(&json!({
                    "name": format!("Shopper {n}"),
                    "username": username,
                    "email": email,
                    "password": PASSWORD,
                })),
        )
        .await
        .expect(201);
        self.login(&email, PASSWORD).await
    }

    /// `n` new customers, registered 32 at a time.
    pub async fn customers(&self, n: usize) -> Vec<User> {
        futures::stream::iter(0..n)
            .map(|_| self.customer())
            .buffer_unordered(32)
            .collect()
            .await
    }

    /// Signs in by email.
    pub async fn login(&self, email: &str, password: &str) -> User {
        let reply = send(
            self.client
                .post(format!("{}/v1/auth/login", self.account_url))
                .json(&json!({"email": email, "password": password})),
        )
        .await;
        reply.expect(200);
        User {
            id: id_of(&reply.body["user"]),
            token: reply.body["access_token"].as_str().unwrap().to_owned(),
        }
    }

    /// A new user the admin made a seller (its token carries the new role at
    /// once: every check reads the current role).
    pub async fn seller(&self) -> User {
        let user = self.customer().await;
        let reply = send(
            self.client
                .patch(format!("{}/v1/admin/users/{}", self.account_url, user.id))
                .bearer_auth(&self.admin.token)
                .json(&json!({"role": "seller"})),
        )
        .await;
        reply.expect(200);
        assert_eq!(reply.body["role"], "seller");
        user
    }

    /// Signs out at the account service.
    pub async fn logout(&self, user: &User) -> Reply {
        send(
            self.client
                .post(format!("{}/v1/auth/logout", self.account_url))
                .bearer_auth(&user.token),
        )
        .await
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
    /// The host's configuration, for starting replicas of it.
    host_config: shopeezy_host::Config,
    host_shutdown: Shutdown,
    account_shutdown: Shutdown,
    // Dropped after the services were told to stop: the databases, then the folder.
    _host_database: Option<TestDatabase>,
    _account_database: Option<TestDatabase>,
    _dir: TempDir,
}

impl Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.host_shutdown.trigger();
        self.account_shutdown.trigger();
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
/// reached (the test is skipped; the helpers said why).
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, Options::default()).await
}

/// As [`spawn_app`], with options.
pub async fn spawn_app_with(backend: Backend, options: Options) -> Option<TestApp> {
    init_logs();
    let dir = TempDir::new();

    let mut account = shopeezy_account::Config::defaults();
    account.http_addr = "127.0.0.1:0".parse().unwrap();
    account.grpc_addr = "127.0.0.1:0".parse().unwrap();
    account.data_dir = dir.0.clone();
    account.admin_email = Some(ADMIN_EMAIL.to_owned());
    account.admin_password = Some(ADMIN_PASSWORD.to_owned());
    // Fast hashing: these tests register hundreds of users.
    account.argon2_memory_kib = 1024;
    account.argon2_iterations = 1;
    // Shoppers in a race share no account, but keep the throttle out of the way.
    account.login_max_failures = 1000;

    // Two tests run at once, some with two hosts, on one PostgreSQL (100
    // connections): keep each pool small.
    account.database_max_connections = 6;
    let mut host = shopeezy_host::Config::defaults();
    host.http_addr = "127.0.0.1:0".parse().unwrap();
    host.database_max_connections = 12;
    if let Some(configure) = options.configure_host {
        configure(&mut host);
    }

    let mut db_proxy = None;
    let (host_database, account_database) = match backend {
        Backend::Embedded => {
            account.database_url = format!("sqlite://{}/account.db", dir.0.display());
            account.redis_url = None;
            host.database_url = match options.sqlite_dir {
                Some(sqlite_dir) => format!("sqlite://{sqlite_dir}/host.db"),
                None => format!("sqlite://{}/host.db", dir.0.display()),
            };
            (None, None)
        }
        Backend::Production => {
            let account_db = testing::fresh_postgres().await?;
            let host_db = testing::fresh_postgres().await?;
            let redis = testing::reachable_redis().await?;
            account.database_url = account_db.url.clone();
            account.redis_url = Some(redis);
            account.redis_key_prefix = testing::unique_prefix();
            host.database_url = host_db.url.clone();
            if options.database_through_proxy {
                let proxy = TcpProxy::start(&testing::url_host_port(&host_db.url))
                    .await
                    .expect("the proxy starts");
                host.database_url = testing::url_via(&host_db.url, &proxy.host_port());
                db_proxy = Some(proxy);
            }
            (Some(host_db), Some(account_db))
        }
    };

    let account_app = shopeezy_account::Application::build(account)
        .await
        .expect("the account service builds");
    let account_http = account_app.http_addr();
    let account_grpc = account_app.grpc_addr();
    let account_shutdown = account_app.shutdown_handle();
    tokio::spawn(account_app.run_until_stopped());

    let auth_proxy = if options.auth_through_proxy {
        Some(
            TcpProxy::start(&account_grpc.to_string())
                .await
                .expect("the proxy starts"),
        )
    } else {
        None
    };
    host.auth_grpc_url = match &auth_proxy {
        Some(proxy) => format!("http://{}", proxy.host_port()),
        None => format!("http://{account_grpc}"),
    };
    let host_app = shopeezy_host::Application::build(host.clone())
        .await
        .expect("the host builds");
    let host_http = host_app.http_addr();
    let host_shutdown = host_app.shutdown_handle();
    let db = host_app.state().db.clone();
    tokio::spawn(host_app.run_until_stopped());

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut api = Api {
        client,
        host_url: format!("http://{host_http}"),
        account_url: format!("http://{account_http}"),
        admin: User {
            id: Uuid::nil(),
            token: String::new(),
        },
    };
    api.admin = api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    Some(TestApp {
        api,
        db,
        auth_proxy,
        db_proxy,
        dir: dir.0.clone(),
        host_config: host,
        host_shutdown,
        account_shutdown,
        _host_database: host_database,
        _account_database: account_database,
        _dir: dir,
    })
}

fn init_logs() {
    static LOGS: Once = Once::new();
    LOGS.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            shopeezy_common::telemetry::init("info,sqlx=warn");
        }
    });
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
    /// Starts a second host on the same database.
    pub async fn replica(&self) -> Replica {
        let app = shopeezy_host::Application::build(self.host_config.clone())
            .await
            .expect("the replica builds");
        let mut api = self.api.clone();
        api.host_url = format!("http://{}", app.http_addr());
        let shutdown = app.shutdown_handle();
        tokio::spawn(app.run_until_stopped());
        Replica { api, shutdown }
    }

    /// A `SELECT COUNT(*) …` on the host's database, with one optional text
    /// parameter bound as `$1`.
    pub async fn count(&self, sql: &str, param: Option<&str>) -> i64 {
        shopeezy_common::with_db!(&self.db, pool => {
            let mut query = sqlx::query_scalar::<_, i64>(sql);
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
        shopeezy_common::with_db!(&self.db, pool => sqlx::query_scalar::<_, i64>(sql)
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
        let rows: Vec<sqlx::types::Json<Value>> = shopeezy_common::with_db!(&self.db, pool => sqlx::query_scalar(sql)
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

/// Polls `probe` until it returns `true` or `within` passes; whether it did.
pub async fn eventually<F, Fut>(within: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if probe().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
