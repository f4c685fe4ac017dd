//! `spawn(options)`: the real account service, the real host (one replica or
//! two on one database) and, when asked, the real notifier, each on fresh
//! databases (the testkit's [`StackConfig`]), publishing to an exchange of
//! the test's own on the real RabbitMQ; `TestBroker` gives that exchange,
//! queues bound to it that the test reads, and removes what it declared when
//! dropped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ExchangeDeleteOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};
use shopeezy_common::db::Db;
use shopeezy_common::events::{Faults, Relay, RelaySettings, amqp};
use shopeezy_common::shutdown::Shutdown;
use shopeezy_notifier::consumer::Stats;
use shopeezy_testkit::{Accounts, StackConfig, TcpProxy, init_logs, servers};
use uuid::Uuid;

pub use shopeezy_testkit::{Backend, Reply, User, eventually, id_of, send};

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
        let url = servers::reachable_amqp().await?;
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
        shopeezy_testkit::servers::run_to_end(async move {
            let Ok(connection) = amqp::connect(&url, "shopeezy events test cleanup").await else {
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
                        .exchange_delete(&format!("{queue}.dlx"), ExchangeDeleteOptions::default())
                        .await;
                }
                let _ = channel
                    .exchange_delete(&exchange, ExchangeDeleteOptions::default())
                    .await;
            }
            amqp::close(&connection).await;
        });
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

/// The clients of the services' REST APIs (the account service's through
/// [`Accounts`], which this derefs to); cheap to clone into tasks.
#[derive(Debug, Clone)]
pub struct Api {
    /// Registers users, signs them in, grants roles; the admin signed in.
    pub accounts: Accounts,
    /// One URL per host replica.
    pub host_urls: Vec<String>,
    pub notifier_url: Option<String>,
}

impl std::ops::Deref for Api {
    type Target = Accounts;

    fn deref(&self) -> &Accounts {
        &self.accounts
    }
}

impl Api {
    /// A request to host replica `replica`.
    pub fn host(&self, replica: usize, user: &User, method: Method, path: &str) -> RequestBuilder {
        let base = &self.host_urls[replica % self.host_urls.len()];
        self.client
            .request(method, format!("{base}{path}"))
            .bearer_auth(&user.token)
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
    /// The services, stopped (and their data removed) when dropped.
    stack: shopeezy_testkit::Stack,
}

impl std::ops::Deref for Stack {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
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
    let mut config = StackConfig::new(options.backend).await?;
    config.account.events = relay_settings(options.account_amqp.as_deref(), &options.exchange);
    config.host.events = relay_settings(options.host_amqp.as_deref(), &options.exchange);
    config.host.events.faults = options.host_faults.clone();
    config.host.events.outbox_retention_hours = options.retention_hours;
    config.host_replicas = options.host_replicas;
    let notifier = match &options.notifier_queue {
        Some(queue) => {
            let mut notifier = shopeezy_notifier::Config::try_parse_args(["shopeezy-notifier"])
                .expect("the defaults are a configuration");
            notifier.http_addr = "127.0.0.1:0".parse().unwrap();
            notifier.database_url = config.storage.database_url("notifier").await?;
            notifier.amqp_url = options.host_amqp.clone().unwrap_or_else(servers::amqp_url);
            notifier.amqp_exchange = options.exchange.clone();
            notifier.queue = queue.clone();
            notifier.delivery_limit = options.delivery_limit;
            Some(notifier)
        }
        None => None,
    };
    let mut stack = config.start().await;

    let mut notifier_handle = None;
    let mut notifier_url = None;
    if let Some(mut notifier) = notifier {
        notifier.auth_grpc_url = format!("http://{}", stack.account_grpc);
        let app = shopeezy_notifier::Application::build(notifier)
            .await
            .expect("the notifier builds");
        notifier_url = Some(format!("http://{}", app.http_addr()));
        notifier_handle = Some(NotifierHandle {
            db: app.state().db.clone(),
            stats: app.state().stats.clone(),
        });
        stack.stop_on_drop(app.shutdown_handle());
        tokio::spawn(app.run_until_stopped());
    }

    let api = Api {
        accounts: stack.accounts.clone(),
        host_urls: stack.hosts.iter().map(|h| h.url.clone()).collect(),
        notifier_url,
    };
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
        host_db: stack.host_db().clone(),
        host_relays: stack.hosts.iter().map(|h| h.relay.clone()).collect(),
        notifier: notifier_handle,
        relay_settings: stack.host_config.events.clone(),
        stack,
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
        self.stack.stop_on_drop(stop);
        relay
    }
}

/// A proxy in front of RabbitMQ that the test can cut.
pub async fn broker_proxy(broker: &TestBroker) -> (TcpProxy, String) {
    let mut target = servers::url_host_port(&broker.url);
    if !target.contains(':') {
        target.push_str(":5672");
    }
    let proxy = TcpProxy::start(&target).await.expect("the proxy starts");
    let url = servers::url_via(&broker.url, &proxy.host_port());
    (proxy, url)
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
