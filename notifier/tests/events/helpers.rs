//! `spawn(options)`: the real account service, the real host (one replica or
//! two on one database) and, when asked, the real notifier, each on fresh
//! databases, publishing to an exchange of the test's own on the real
//! RabbitMQ; `TestBroker` gives that exchange, queues bound to it that the
//! test reads, and removes what it declared when dropped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use shopeezy_common::db::Db;
use shopeezy_common::events::{Faults, Relay, RelaySettings, amqp};
use shopeezy_common::shutdown::Shutdown;
use shopeezy_common::testing::{self, TcpProxy, TestDatabase};
use shopeezy_notifier::consumer::Stats;
use std::sync::Arc;
use uuid::Uuid;

pub const ADMIN_EMAIL: &str = "admin@shopeezy.test";
pub const ADMIN_PASSWORD: &str = "admin-password-1";
pub const PASSWORD: &str = "correct-horse-battery";

/// Which backends the services run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// SQLite files in a fresh folder, revocation in-process.
    #[default]
    Embedded,
    /// Fresh PostgreSQL databases and Redis under a key prefix of its own.
    Production,
}

/// A folder removed when dropped.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let path = std::env::temp_dir().join(format!("shopeezy-events-test-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn init_logs() {
    static LOGS: Once = Once::new();
    LOGS.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            shopeezy_common::telemetry::init("info,sqlx=warn");
        }
    });
}

// ---- the broker --------------------------------------------------------------

/// An exchange of this test's own on the real RabbitMQ, and everything the
/// test declares there; deleted when dropped.
pub struct TestBroker {
    pub url: String,
    pub exchange: String,
    connection: Connection,
    channel: Channel,
    /// Queues (and their dead-letter exchanges) a notifier declared.
    notifier_queues: std::sync::Mutex<Vec<String>>,
}

impl TestBroker {
    /// `None` when RabbitMQ cannot be reached (skipped; under CI it fails).
    pub async fn new() -> Option<Self> {
        init_logs();
        let url = testing::reachable_amqp().await?;
        let exchange = format!("shopeezy.events.test.{}", Uuid::new_v4().simple());
        let connection = amqp::connect(&url, "shopeezy events test").await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        amqp::declare_events_exchange(&channel, &exchange)
            .await
            .unwrap();
        Some(Self {
            url,
            exchange,
            connection,
            channel,
            notifier_queues: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// A queue of the test's own, bound to `keys`, that disappears with the test.
    pub async fn queue(&self, keys: &[&str]) -> TestQueue {
        let channel = self.connection.create_channel().await.unwrap();
        let name = format!("test.{}", Uuid::new_v4().simple());
        channel
            .queue_declare(
                &name,
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        for key in keys {
            channel
                .queue_bind(
                    &name,
                    &self.exchange,
                    key,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
        }
        let consumer = channel
            .basic_consume(
                &name,
                "",
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap();
        TestQueue {
            consumer,
            _channel: channel,
        }
    }

    /// A notifier queue name, removed (with its dead letters) at the end.
    pub fn notifier_queue(&self) -> String {
        let name = format!("shopeezy.notifier.test.{}", Uuid::new_v4().simple());
        self.notifier_queues.lock().unwrap().push(name.clone());
        name
    }

    /// Publishes a raw message to the exchange, as a misbehaving publisher could.
    pub async fn publish_raw(&self, routing_key: &str, body: &[u8], message_id: &str) {
        let confirm = self
            .channel
            .basic_publish(
                &self.exchange,
                routing_key,
                BasicPublishOptions::default(),
                body,
                BasicProperties::default()
                    .with_message_id(message_id.into())
                    .with_content_type(amqp::CONTENT_TYPE.into())
                    .with_delivery_mode(amqp::PERSISTENT),
            )
            .await
            .unwrap();
        confirm.await.unwrap();
    }

    /// Takes one message off `queue` (acknowledged), if there is one.
    pub async fn get(&self, queue: &str) -> Option<Message> {
        let got = self
            .channel
            .basic_get(queue, BasicGetOptions { no_ack: true })
            .await
            .unwrap()?;
        Some(Message::from_delivery(&got.delivery))
    }

    /// Polls `queue` until a message is there or `within` passes.
    pub async fn get_within(&self, queue: &str, within: Duration) -> Option<Message> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(m) = self.get(queue).await {
                return Some(m);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        let url = self.url.clone();
        let exchange = self.exchange.clone();
        let queues = std::mem::take(&mut *self.notifier_queues.lock().unwrap());
        // Dropping runs outside any runtime the test may still be inside of.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok(connection) = amqp::connect(&url, "shopeezy events test cleanup").await
                else {
                    return;
                };
                if let Ok(channel) = connection.create_channel().await {
                    for queue in &queues {
                        for q in [queue.clone(), format!("{queue}.dead")] {
                            let _ = channel
                                .queue_delete(&q, QueueDeleteOptions::default())
                                .await;
                        }
                        let _ = channel
                            .exchange_delete(
                                &format!("{queue}.dlx"),
                                ExchangeDeleteOptions::default(),
                            )
                            .await;
                    }
                    let _ = channel
                        .exchange_delete(&exchange, ExchangeDeleteOptions::default())
                        .await;
                }
                amqp::close(&connection).await;
            });
        })
        .join();
    }
}

/// One message as a consumer sees it.
#[derive(Debug, Clone)]
pub struct Message {
    pub routing_key: String,
    pub properties: BasicProperties,
    pub body: Value,
    pub raw: Vec<u8>,
    /// When the test received it.
    pub received_at: chrono::DateTime<chrono::Utc>,
}

impl Message {
    fn from_delivery(d: &lapin::message::Delivery) -> Self {
        Self {
            routing_key: d.routing_key.to_string(),
            properties: d.properties.clone(),
            body: serde_json::from_slice(&d.data).unwrap_or(Value::Null),
            raw: d.data.clone(),
            received_at: chrono::Utc::now(),
        }
    }

    pub fn message_id(&self) -> String {
        self.properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    /// The order (or user) id in the event's data.
    pub fn data_id(&self) -> Uuid {
        let id = self.body["data"]["id"]
            .as_str()
            .or_else(|| self.body["data"]["user_id"].as_str())
            .unwrap_or_else(|| panic!("no data id in {}", self.body));
        Uuid::parse_str(id).unwrap()
    }
}

/// A test's queue and its consumer (auto-ack).
pub struct TestQueue {
    consumer: lapin::Consumer,
    _channel: Channel,
}

impl TestQueue {
    /// The next message, if one comes within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Message> {
        match tokio::time::timeout(within, self.consumer.next()).await {
            Ok(Some(Ok(delivery))) => Some(Message::from_delivery(&delivery)),
            Ok(Some(Err(e))) => panic!("the test consumer failed: {e}"),
            _ => None,
        }
    }

    /// Messages until `n` came or `within` passed.
    pub async fn take(&mut self, n: usize, within: Duration) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + within;
        let mut got = Vec::with_capacity(n.min(4096));
        while got.len() < n {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(m) => got.push(m),
                None => break,
            }
        }
        got
    }

    /// Messages until `done` says the collection is complete or `within`
    /// passed.
    pub async fn take_until(
        &mut self,
        within: Duration,
        mut done: impl FnMut(&[Message]) -> bool,
    ) -> Vec<Message> {
        let deadline = tokio::time::Instant::now() + within;
        let mut got = Vec::new();
        while !done(&got) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(m) => got.push(m),
                None => break,
            }
        }
        got
    }

    /// Whatever arrives within `window` (to show that nothing more comes).
    pub async fn quiet(&mut self, window: Duration) -> Vec<Message> {
        self.take(usize::MAX, window).await
    }
}

// ---- HTTP --------------------------------------------------------------------

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
    pub body: Value,
}

impl Reply {
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

    #[track_caller]
    pub fn expect_problem(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        assert_eq!(self.body["code"], code, "{}", self.body);
        self
    }

    pub fn id(&self) -> Uuid {
        id_of(&self.body)
    }
}

#[track_caller]
pub fn id_of(value: &Value) -> Uuid {
    value["id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .unwrap_or_else(|| panic!("no id in {value}"))
}

pub async fn send(request: RequestBuilder) -> Reply {
    let response = request
        .send()
        .await
        .expect("the request reaches the server");
    let status = response.status();
    let bytes = response.bytes().await.expect("the answer is read whole");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Reply { status, body }
}

static USER_SEQ: AtomicU64 = AtomicU64::new(0);

/// The clients of the services' REST APIs; cheap to clone into tasks.
#[derive(Debug, Clone)]
pub struct Api {
    pub client: reqwest::Client,
    pub account_url: String,
    /// One URL per host replica.
    pub host_urls: Vec<String>,
    pub notifier_url: Option<String>,
    pub admin: User,
}

impl Api {
    /// A request to host replica `replica`.
    pub fn host(&self, replica: usize, user: &User, method: Method, path: &str) -> RequestBuilder {
        let base = &self.host_urls[replica % self.host_urls.len()];
        self.client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&user.token)
    }

    /// Registers a new customer; the answer.
    pub async fn register(&self, username: &str, email: &str) -> Reply {
        send(
            self.client
                .post(format!("{}/v1/auth/register", self.account_url))
                .json(&json!({"name": "Shopper", "username": username, "email": email, "password": PASSWORD})),
        )
        .await
    }

    /// Registers a new customer and signs it in.
    pub async fn customer(&self) -> User {
        let n = USER_SEQ.fetch_add(1, Ordering::Relaxed);
        let username = format!("u{n}-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let email = format!("{username}@example.com");
        self.register(&username, &email).await.expect(201);
        self.login(&email, PASSWORD).await
    }

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

    /// A new user the admin made a seller.
    pub async fn seller(&self) -> User {
        let user = self.customer().await;
        send(
            self.client
                .patch(format!("{}/v1/admin/users/{}", self.account_url, user.id))
                .bearer_auth(&self.admin.token)
                .json(&json!({"role": "seller"})),
        )
        .await
        .expect(200);
        user
    }

    /// A new product of `seller`; its id.
    pub async fn product(&self, seller: &User, price: i64, stock: i64) -> Uuid {
        let sku = format!("sku-{}", Uuid::new_v4().simple());
        let reply = send(self.host(0, seller, Method::POST, "/v1/products").json(
            &json!({"sku": sku, "name": "Mug", "price": price, "currency": "USD", "stock": stock}),
        ))
        .await;
        reply.expect(201);
        reply.id()
    }

    pub async fn set_stock(&self, seller: &User, product: Uuid, stock: i64) {
        send(
            self.host(
                0,
                seller,
                Method::PUT,
                &format!("/v1/products/{product}/stock"),
            )
            .json(&json!({"stock": stock})),
        )
        .await
        .expect(200);
    }

    pub async fn put_item(&self, replica: usize, user: &User, product: Uuid, quantity: i64) {
        send(
            self.host(
                replica,
                user,
                Method::PUT,
                &format!("/v1/cart/items/{product}"),
            )
            .json(&json!({"quantity": quantity})),
        )
        .await
        .expect(200);
    }

    /// `POST /v1/checkout` with a fresh key.
    pub async fn checkout(&self, replica: usize, user: &User) -> Reply {
        send(
            self.host(replica, user, Method::POST, "/v1/checkout")
                .header("Idempotency-Key", Uuid::new_v4().to_string()),
        )
        .await
    }

    /// Puts `quantity` of `product` in the cart and checks out (201): the order.
    pub async fn order(&self, replica: usize, user: &User, product: Uuid, quantity: i64) -> Value {
        self.put_item(replica, user, product, quantity).await;
        let reply = self.checkout(replica, user).await;
        reply.expect(201);
        reply.body
    }

    /// An admin moves an order (asserting 200).
    pub async fn move_order(&self, replica: usize, order: Uuid, status: &str) {
        send(
            self.host(
                replica,
                &self.admin,
                Method::POST,
                &format!("/v1/admin/orders/{order}/status"),
            )
            .json(&json!({"status": status})),
        )
        .await
        .expect(200);
    }

    pub async fn cancel(&self, user: &User, order: Uuid) {
        send(self.host(0, user, Method::POST, &format!("/v1/orders/{order}/cancel")))
            .await
            .expect(200);
    }

    /// `GET /readyz` of host replica `replica`.
    pub async fn host_readyz(&self, replica: usize) -> Reply {
        let base = &self.host_urls[replica % self.host_urls.len()];
        send(self.client.get(format!("{base}/readyz"))).await
    }

    /// `GET /v1/notifications?{query}` at the notifier, with `token`.
    pub async fn notifications(&self, token: Option<&str>, query: &str) -> Reply {
        let url = self.notifier_url.as_ref().expect("a notifier runs");
        let mut request = self.client.get(format!("{url}/v1/notifications?{query}"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        send(request).await
    }

    /// The kinds of the user's notifications, newest first (asserting 200).
    pub async fn notification_kinds(&self, user: &User) -> Vec<String> {
        let reply = self.notifications(Some(&user.token), "limit=100").await;
        reply.expect(200);
        reply.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["kind"].as_str().unwrap().to_owned())
            .collect()
    }
}

// ---- the services ------------------------------------------------------------

/// What a test wants running.
#[derive(Debug, Clone)]
pub struct Options {
    pub backend: Backend,
    /// Where the host replicas publish (`None`: embedded, in-process).
    pub host_amqp: Option<String>,
    /// Where the account service publishes (`None`: embedded).
    pub account_amqp: Option<String>,
    /// The exchange both publish to.
    pub exchange: String,
    /// Host replicas on one database.
    pub host_replicas: usize,
    /// Faults of the host replicas' relays.
    pub host_faults: Faults,
    /// Hours sent events are kept.
    pub retention_hours: u64,
    /// A notifier consuming from `exchange` through this queue.
    pub notifier_queue: Option<String>,
    pub delivery_limit: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            backend: Backend::Embedded,
            host_amqp: None,
            account_amqp: None,
            exchange: amqp::DEFAULT_EXCHANGE.into(),
            host_replicas: 1,
            host_faults: Faults::default(),
            retention_hours: 168,
            notifier_queue: None,
            delivery_limit: 5,
        }
    }
}

impl Options {
    /// Everything publishing directly to `broker`'s exchange.
    pub fn on(broker: &TestBroker, backend: Backend) -> Self {
        Self {
            backend,
            host_amqp: Some(broker.url.clone()),
            account_amqp: Some(broker.url.clone()),
            exchange: broker.exchange.clone(),
            ..Self::default()
        }
    }
}

/// The notifier of a stack.
pub struct NotifierHandle {
    pub db: Db,
    pub stats: Arc<Stats>,
}

/// The services of one test.
pub struct Stack {
    pub api: Api,
    /// The host's database (shared by its replicas).
    pub host_db: Db,
    /// Each host replica's relay.
    pub host_relays: Vec<Relay>,
    pub notifier: Option<NotifierHandle>,
    /// The relay settings the host replicas run with (to start another).
    pub relay_settings: RelaySettings,
    shutdowns: Vec<Shutdown>,
    _databases: Vec<TestDatabase>,
    _dir: TempDir,
}

impl std::ops::Deref for Stack {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        for s in &self.shutdowns {
            s.trigger();
        }
    }
}

/// Relay settings publishing to `url` (or embedded) on `exchange`.
pub fn relay_settings(url: Option<&str>, exchange: &str) -> RelaySettings {
    let mut settings = shopeezy_host::Config::defaults().events;
    settings.amqp_url = url.map(str::to_owned);
    settings.amqp_exchange = exchange.to_owned();
    settings
}

/// Starts the services; `None` when a backend's servers cannot be reached.
pub async fn spawn(options: Options) -> Option<Stack> {
    init_logs();
    let dir = TempDir::new();
    let mut databases = Vec::new();
    let mut shutdowns = Vec::new();

    let mut account = shopeezy_account::Config::defaults();
    account.http_addr = "127.0.0.1:0".parse().unwrap();
    account.grpc_addr = "127.0.0.1:0".parse().unwrap();
    account.data_dir = dir.0.clone();
    account.admin_email = Some(ADMIN_EMAIL.to_owned());
    account.admin_password = Some(ADMIN_PASSWORD.to_owned());
    account.argon2_memory_kib = 1024;
    account.argon2_iterations = 1;
    account.login_max_failures = 1000;
    account.events = relay_settings(options.account_amqp.as_deref(), &options.exchange);

    let mut host = shopeezy_host::Config::defaults();
    host.http_addr = "127.0.0.1:0".parse().unwrap();
    host.events = relay_settings(options.host_amqp.as_deref(), &options.exchange);
    host.events.faults = options.host_faults.clone();
    host.events.outbox_retention_hours = options.retention_hours;

    let mut notifier = shopeezy_notifier::Config::defaults();
    notifier.http_addr = "127.0.0.1:0".parse().unwrap();
    notifier.amqp_exchange = options.exchange.clone();
    notifier.delivery_limit = options.delivery_limit;

    match options.backend {
        Backend::Embedded => {
            account.database_url = format!("sqlite://{}/account.db", dir.0.display());
            host.database_url = format!("sqlite://{}/host.db", dir.0.display());
            notifier.database_url = format!("sqlite://{}/notifier.db", dir.0.display());
        }
        Backend::Production => {
            let account_db = testing::fresh_postgres().await?;
            let host_db = testing::fresh_postgres().await?;
            let notifier_db = testing::fresh_postgres().await?;
            let redis = testing::reachable_redis().await?;
            account.database_url = account_db.url.clone();
            account.redis_url = Some(redis);
            account.redis_key_prefix = testing::unique_prefix();
            host.database_url = host_db.url.clone();
            notifier.database_url = notifier_db.url.clone();
            databases.extend([account_db, host_db, notifier_db]);
        }
    }

    let account_app = shopeezy_account::Application::build(account)
        .await
        .expect("the account service builds");
    let account_http = account_app.http_addr();
    let account_grpc = account_app.grpc_addr();
    shutdowns.push(account_app.shutdown_handle());
    tokio::spawn(account_app.run_until_stopped());

    host.auth_grpc_url = format!("http://{account_grpc}");
    let mut host_urls = Vec::new();
    let mut host_relays = Vec::new();
    let mut host_db = None;
    for _ in 0..options.host_replicas.max(1) {
        let app = shopeezy_host::Application::build(host.clone())
            .await
            .expect("the host builds");
        host_urls.push(format!("http://{}", app.http_addr()));
        host_relays.push(app.state().relay.clone());
        host_db.get_or_insert_with(|| app.state().db.clone());
        shutdowns.push(app.shutdown_handle());
        tokio::spawn(app.run_until_stopped());
    }

    let mut notifier_handle = None;
    let mut notifier_url = None;
    if let Some(queue) = &options.notifier_queue {
        notifier.queue = queue.clone();
        notifier.amqp_url = options.host_amqp.clone().unwrap_or_else(testing::amqp_url);
        notifier.auth_grpc_url = format!("http://{account_grpc}");
        let app = shopeezy_notifier::Application::build(notifier)
            .await
            .expect("the notifier builds");
        notifier_url = Some(format!("http://{}", app.http_addr()));
        notifier_handle = Some(NotifierHandle {
            db: app.state().db.clone(),
            stats: app.state().stats.clone(),
        });
        shutdowns.push(app.shutdown_handle());
        tokio::spawn(app.run_until_stopped());
    }

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut api = Api {
        client,
        account_url: format!("http://{account_http}"),
        host_urls,
        notifier_url,
        admin: User {
            id: Uuid::nil(),
            token: String::new(),
        },
    };
    api.admin = api.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
    if let Some(url) = &api.notifier_url {
        // Its queue exists (and so receives events) once it consumes.
        let ready = eventually(Duration::from_secs(10), || async {
            let ready = send(api.client.get(format!("{url}/readyz"))).await;
            ready.body["checks"]["broker"]["status"] == "ok"
        })
        .await;
        assert!(ready, "the notifier consumes");
    }
    Some(Stack {
        api,
        host_db: host_db.expect("one host replica"),
        host_relays,
        notifier: notifier_handle,
        relay_settings: host.events,
        shutdowns,
        _databases: databases,
        _dir: dir,
    })
}

impl Stack {
    /// A `SELECT COUNT(*) …` on the host's database.
    pub async fn host_count(&self, sql: &str) -> i64 {
        shopeezy_common::with_db!(&self.host_db, pool => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await.unwrap())
    }

    /// Host outbox rows not sent yet.
    pub async fn unsent(&self) -> i64 {
        self.host_count("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
            .await
    }

    /// The notifier's handle (asserting there is one).
    pub fn notifier(&self) -> &NotifierHandle {
        self.notifier.as_ref().expect("a notifier runs")
    }

    /// Starts another relay on the host's outbox with `settings`; stopped
    /// with the stack.
    pub fn start_relay(&mut self, settings: &RelaySettings) -> Relay {
        let relay = Relay::new(self.host_db.clone(), settings.relay_config("host"));
        let stop = Shutdown::new();
        relay.spawn(stop.wait());
        self.shutdowns.push(stop);
        relay
    }
}

/// A proxy in front of RabbitMQ that the test can cut.
pub async fn broker_proxy(broker: &TestBroker) -> (TcpProxy, String) {
    let target = amqp_host_port(&broker.url);
    let proxy = TcpProxy::start(&target).await.expect("the proxy starts");
    let url = broker.url.replacen(&target, &proxy.host_port(), 1);
    assert_ne!(url, broker.url, "the broker URL names {target}");
    (proxy, url)
}

/// `host:port` of an AMQP URL.
fn amqp_host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    let host_port = rest.split('/').next().unwrap_or(rest);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
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

/// Groups messages by the order (or user) they are about, keeping arrival order.
pub fn by_subject(messages: &[Message]) -> HashMap<String, Vec<&Message>> {
    let mut map: HashMap<String, Vec<&Message>> = HashMap::new();
    for m in messages {
        map.entry(m.body["subject"].as_str().unwrap_or_default().to_owned())
            .or_default()
            .push(m);
    }
    map
}
