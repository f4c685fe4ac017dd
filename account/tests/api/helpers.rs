//! `spawn_app(backend)`: the real account service on fresh storage (the
//! testkit's), with one helper per endpoint (REST and gRPC) and a few checks
//! that every area's tests share.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::header::CONTENT_TYPE;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use shopeezy_account::Config;
use shopeezy_common::shutdown::Shutdown;
use shopeezy_proto::auth::v1 as pb;
use shopeezy_proto::auth::v1::auth_service_client::AuthServiceClient;
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic_health::pb::health_client::HealthClient;
use uuid::Uuid;

use shopeezy_testkit::Storage;
pub use shopeezy_testkit::account::new_signing_key_pem;
pub use shopeezy_testkit::{ADMIN_EMAIL, ADMIN_PASSWORD, Backend, assert_problem};

/// The issuer and audience the service uses by default.
pub const ISSUER: &str = "shopeezy-account";
pub const AUDIENCE: &str = "shopeezy";

/// A user registered by a test, with the password it registered with.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub name: String,
    pub username: String,
    pub email: String,
    pub password: String,
}

/// The running service and clients for both of its APIs.
pub struct TestApp {
    /// `http://127.0.0.1:<port>` of the REST API.
    pub address: String,
    pub grpc_addr: SocketAddr,
    pub backend: Backend,
    pub client: reqwest::Client,
    pub grpc: AuthServiceClient<Channel>,
    pub health: HealthClient<Channel>,
    /// The Ed25519 key (PKCS#8 PEM) the app signs tokens with; tests mint
    /// their own tokens with it.
    pub signing_key_pem: String,
    /// The configuration the app was built with (a restart reuses it).
    pub config: Config,
    shutdown: Shutdown,
    server: Option<JoinHandle<anyhow::Result<()>>>,
    // Dropped with the last replica: the test database, then the data folder.
    _storage: Arc<Storage>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

/// The app on `backend`; `None` when the backend's servers cannot be reached
/// (the test is then skipped: the helpers have said why).
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// As [`spawn_app`], with `configure` applied to the configuration last.
pub async fn spawn_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut Config),
) -> Option<TestApp> {
    let storage = Storage::new(backend).await?;
    let mut config = shopeezy_testkit::account::config(&storage).await?;
    configure(&mut config);

    let running = start(config.clone()).await;
    Some(TestApp {
        address: format!("http://{}", running.http_addr),
        grpc_addr: running.grpc_addr,
        backend,
        client: reqwest::Client::new(),
        grpc: AuthServiceClient::new(running.channel.clone()),
        health: HealthClient::new(running.channel),
        signing_key_pem: config.jwt_private_key.clone().unwrap(),
        config,
        shutdown: running.shutdown,
        server: Some(running.server),
        _storage: Arc::new(storage),
    })
}

struct Running {
    http_addr: SocketAddr,
    grpc_addr: SocketAddr,
    channel: Channel,
    shutdown: Shutdown,
    server: JoinHandle<anyhow::Result<()>>,
}

/// Starts the service on `config` in the background, connected to over gRPC.
async fn start(config: Config) -> Running {
    let shopeezy_testkit::account::RunningAccount {
        http_addr,
        grpc_addr,
        shutdown,
        task: server,
    } = shopeezy_testkit::account::start(config).await;
    let channel = Channel::from_shared(format!("http://{grpc_addr}"))
        .unwrap()
        .connect()
        .await
        .expect("the gRPC server accepts connections");
    Running {
        http_addr,
        grpc_addr,
        channel,
        shutdown,
        server,
    }
}

impl TestApp {
    // ------------------------------------------------------------ lifecycle

    /// Stops the app (letting requests in flight finish) and starts it again
    /// on the same database and configuration, changed by `configure`.
    pub async fn restart_with(&mut self, configure: impl FnOnce(&mut Config)) {
        self.shutdown.trigger();
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(30), server)
                .await
                .expect("the app stops within 30 s")
                .expect("the app's task does not panic")
                .expect("the app stops cleanly");
        }
        configure(&mut self.config);
        let running = start(self.config.clone()).await;
        self.address = format!("http://{}", running.http_addr);
        self.grpc_addr = running.grpc_addr;
        self.grpc = AuthServiceClient::new(running.channel.clone());
        self.health = HealthClient::new(running.channel);
        self.shutdown = running.shutdown;
        self.server = Some(running.server);
    }

    /// A second replica of the service: another process-like instance on the
    /// same database, Redis prefix and signing key.
    pub async fn replica(&self) -> TestApp {
        let running = start(self.config.clone()).await;
        TestApp {
            address: format!("http://{}", running.http_addr),
            grpc_addr: running.grpc_addr,
            backend: self.backend,
            client: reqwest::Client::new(),
            grpc: AuthServiceClient::new(running.channel.clone()),
            health: HealthClient::new(running.channel),
            signing_key_pem: self.signing_key_pem.clone(),
            config: self.config.clone(),
            shutdown: running.shutdown,
            server: Some(running.server),
            _storage: self._storage.clone(),
        }
    }

    // ------------------------------------------------------------ plain HTTP

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// `GET path` without a token.
    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    /// `method path` with a raw body and, when given, a content type.
    pub async fn send_raw(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<reqwest::Body>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.unwrap()
    }

    // ------------------------------------------------------------ auth

    pub async fn register(&self, body: &Value) -> Response {
        self.client
            .post(self.url("/v1/auth/register"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Registers `username` (email `<username>@example.com`) and returns it.
    pub async fn register_user(&self, username: &str) -> TestUser {
        let mut name = username.to_owned();
        if let Some(first) = name.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        let user = TestUser {
            id: String::new(),
            name,
            username: username.to_owned(),
            email: format!("{username}@example.com"),
            password: format!("{username}-password-1"),
        };
        let response = self.register(&user.registration()).await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "registering {username}"
        );
        let body: Value = response.json().await.unwrap();
        TestUser {
            id: body["id"].as_str().unwrap().to_owned(),
            ..user
        }
    }

    pub async fn login(&self, body: &Value) -> Response {
        self.login_via(&self.client, body).await
    }

    /// `POST /v1/auth/login` sent by `client` (e.g. one [`client_from`] an
    /// address of its own).
    pub async fn login_via(&self, client: &reqwest::Client, body: &Value) -> Response {
        client
            .post(self.url("/v1/auth/login"))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Signs in by email with `password`, expecting success; the token.
    pub async fn login_with(&self, email: &str, password: &str) -> String {
        let response = self
            .login(&json!({"email": email, "password": password}))
            .await;
        assert_eq!(response.status(), StatusCode::OK, "signing in as {email}");
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Signs `user` in by email; the token.
    pub async fn login_as(&self, user: &TestUser) -> String {
        self.login_with(&user.email, &user.password).await
    }

    /// Signs the configured admin in; the token.
    pub async fn login_as_admin(&self) -> String {
        self.login_with(ADMIN_EMAIL, ADMIN_PASSWORD).await
    }

    pub async fn logout(&self, token: &str) -> Response {
        self.client
            .post(self.url("/v1/auth/logout"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn jwks(&self) -> Value {
        let response = self.get("/.well-known/jwks.json").await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }

    // ------------------------------------------------------------ backends

    /// Deletes every Redis key of this app (its key prefix only: other tests
    /// share the server), as a Redis restarted without persistence would.
    ///
    /// A repair started by an earlier check (copying the revocations back
    /// from the database) may still be writing when the keys are deleted, and
    /// put some back a moment later: the keys are deleted again until none is
    /// left a moment after a deletion.
    pub async fn forget_redis_keys(&self) {
        let url = self
            .config
            .redis_url
            .as_deref()
            .expect("the app runs with Redis");
        let client = redis::Client::open(url).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let pattern = format!("{}*", self.config.redis_key_prefix);
        let mut left: Vec<String> = Vec::new();
        for _ in 0..50 {
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                if !keys.is_empty() {
                    let _: u64 = redis::cmd("DEL")
                        .arg(&keys)
                        .query_async(&mut conn)
                        .await
                        .unwrap();
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            left = redis::cmd("KEYS")
                .arg(&pattern)
                .query_async(&mut conn)
                .await
                .unwrap();
            if left.is_empty() {
                return;
            }
        }
        panic!("keys left: {left:?}");
    }

    /// The value of one SQL query answering a single integer, on the app's
    /// own database (for what the API cannot show: rows kept or deleted).
    pub async fn count(&self, sql: &str) -> i64 {
        let url = &self.config.database_url;
        match self.backend {
            Backend::Embedded => {
                let pool = sqlx::SqlitePool::connect(url).await.unwrap();
                let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
                pool.close().await;
                n
            }
            Backend::Production => {
                let pool = sqlx::PgPool::connect(url).await.unwrap();
                let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
                pool.close().await;
                n
            }
            Backend::MySql => {
                let pool = sqlx::MySqlPool::connect(url).await.unwrap();
                let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
                pool.close().await;
                n
            }
        }
    }

    // ------------------------------------------------------------ users

    pub async fn me(&self, token: &str) -> Response {
        self.client
            .get(self.url("/v1/users/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// The caller's profile, expecting success.
    pub async fn me_json(&self, token: &str) -> Value {
        let response = self.me(token).await;
        assert_eq!(response.status(), StatusCode::OK, "GET /v1/users/me");
        response.json().await.unwrap()
    }

    pub async fn update_me(&self, token: &str, body: &Value) -> Response {
        self.client
            .patch(self.url("/v1/users/me"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn delete_me(&self, token: &str) -> Response {
        self.client
            .delete(self.url("/v1/users/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    // ------------------------------------------------------------ admin

    /// `GET /v1/admin/users?<query>`.
    pub async fn list_users(&self, token: &str, query: &str) -> Response {
        self.client
            .get(self.url(&format!("/v1/admin/users?{query}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Every user, following the pages, as the admin `token` sees them.
    pub async fn all_users(&self, token: &str) -> Vec<Value> {
        let mut users = Vec::new();
        let mut query = "limit=100".to_owned();
        loop {
            let response = self.list_users(token, &query).await;
            assert_eq!(response.status(), StatusCode::OK);
            let page: Value = response.json().await.unwrap();
            users.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(cursor) => query = format!("limit=100&cursor={cursor}"),
                None => return users,
            }
        }
    }

    pub async fn get_user(&self, token: &str, id: &str) -> Response {
        self.client
            .get(self.url(&format!("/v1/admin/users/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    pub async fn change_role(&self, token: &str, id: &str, body: &Value) -> Response {
        self.client
            .patch(self.url(&format!("/v1/admin/users/{id}")))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    // ------------------------------------------------------------ gRPC

    pub async fn validate_token(
        &self,
        token: &str,
    ) -> Result<pb::ValidateTokenResponse, tonic::Status> {
        self.grpc
            .clone()
            .validate_token(pb::ValidateTokenRequest {
                token: token.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn grpc_get_user(&self, user_id: &str) -> Result<pb::User, tonic::Status> {
        self.grpc
            .clone()
            .get_user(pb::GetUserRequest {
                user_id: user_id.to_owned(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn grpc_get_users(&self, user_ids: &[&str]) -> Result<Vec<pb::User>, tonic::Status> {
        self.grpc
            .clone()
            .get_users(pb::GetUsersRequest {
                user_ids: user_ids.iter().map(|id| (*id).to_owned()).collect(),
            })
            .await
            .map(|r| r.into_inner().users)
    }

    // ------------------------------------------------------------ tokens

    /// The service's key id, as its JWKS publishes it.
    pub async fn kid(&self) -> String {
        self.jwks().await["keys"][0]["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A token signed with the app's own key and kid, carrying `claims`.
    pub async fn mint(&self, claims: &Value) -> String {
        sign_token(&self.signing_key_pem, Some(&self.kid().await), claims)
    }
}

impl TestUser {
    /// The registration body of this user.
    pub fn registration(&self) -> Value {
        json!({
            "name": self.name,
            "username": self.username,
            "email": self.email,
            "password": self.password,
        })
    }
}

/// An HTTP client whose connections come from `ip` (any of 127.0.0.0/8
/// reaches the app on Linux), to act as a client of another address.
pub fn client_from(ip: &str) -> reqwest::Client {
    let ip: IpAddr = ip.parse().unwrap();
    reqwest::Client::builder()
        .local_address(ip)
        .build()
        .unwrap()
}

/// Claims as the service issues them, for `user_id`, valid for ten minutes.
pub fn valid_claims(user_id: &str) -> Value {
    let now = unix_now();
    json!({
        "sub": user_id,
        "jti": Uuid::now_v7(),
        "iat": now,
        "exp": now + 600,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "role": "customer",
    })
}

/// A JWT signed with EdDSA by the key in `pem`.
pub fn sign_token(pem: &str, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid.map(str::to_owned);
    let key = EncodingKey::from_ed_pem(pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// The decoded payload of a JWT, unverified.
pub fn token_payload(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

/// Seconds since the epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---------------------------------------------------------------- checks

/// Asserts a 422 `validation_failed` problem naming `field`.
pub async fn assert_invalid_field(response: Response, field: &str) {
    let body = assert_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(body["field"], field, "{body}");
}

/// Asserts that `token` is refused by REST (401) and by gRPC (UNAUTHENTICATED).
pub async fn assert_token_refused(app: &TestApp, token: &str) {
    let response = app.me(token).await;
    assert_eq!(
        response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer")
    );
    assert_problem(response, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let status = app
        .validate_token(token)
        .await
        .expect_err("ValidateToken must refuse the token");
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
}

/// Asserts that `token` is accepted by REST and gRPC as `user`'s, with `role`.
pub async fn assert_token_accepted(app: &TestApp, token: &str, user_id: &str, role: &str) {
    let me = app.me_json(token).await;
    assert_eq!(me["id"], user_id);
    assert_eq!(me["role"], role);
    let valid = app
        .validate_token(token)
        .await
        .expect("ValidateToken accepts the token");
    assert_eq!(valid.user_id, user_id);
    assert_eq!(valid.role, role);
}
