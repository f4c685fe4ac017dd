//! The account service in tests: its one test configuration, the service
//! started on it, and [`Accounts`], a client that registers users, signs
//! them in and grants them roles.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use futures::StreamExt;
use serde_json::json;
use shopeezy_account::{Application, Config};
use shopeezy_common::shutdown::Shutdown;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::http::{Reply, id_of, send};
use crate::{Storage, servers};

/// The admin every test's account service is configured to make exist.
pub const ADMIN_EMAIL: &str = "admin@example.com";
/// That admin's password.
pub const ADMIN_PASSWORD: &str = "admin-password-1";
/// The password of every user [`Accounts`] registers.
pub const PASSWORD: &str = "correct-horse-battery";

/// The account service's configuration for a test on `storage`: the
/// defaults (no `SHOPEEZY_*` variable is read), ports chosen by the system,
/// a database of its own, Redis under a key prefix of its own (production
/// backend), a fresh signing key, the admin [`ADMIN_EMAIL`] and fast
/// password hashing. `None` when the backend's servers cannot be reached.
pub async fn config(storage: &Storage) -> Option<Config> {
    let mut config =
        Config::try_parse_args(["shopeezy-account"]).expect("the defaults are a configuration");
    config.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.grpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.data_dir = storage.dir().to_owned();
    config.database_url = storage.database_url("account").await?;
    // Tests run at once, some with several services, on one PostgreSQL (100
    // connections): keep each pool small.
    config.database_max_connections = 6;
    if let Some(redis) = storage.redis_url() {
        config.redis_url = Some(redis.to_owned());
        config.redis_key_prefix = servers::unique_prefix();
    }
    config.jwt_private_key = Some(new_signing_key_pem());
    config.admin_email = Some(ADMIN_EMAIL.to_owned());
    config.admin_password = Some(ADMIN_PASSWORD.to_owned());
    // Fast hashing: the tests are about behaviour, not about argon2's cost.
    config.argon2_memory_kib = 1024;
    config.argon2_iterations = 1;
    Some(config)
}

/// A new Ed25519 private key as PKCS#8 PEM.
pub fn new_signing_key_pem() -> String {
    SigningKey::generate(&mut rand::rngs::OsRng)
        .to_pkcs8_pem(LineEnding::LF)
        .expect("an Ed25519 key encodes")
        .to_string()
}

/// The account service running in the background of a test.
#[derive(Debug)]
pub struct RunningAccount {
    /// Where its REST API listens.
    pub http_addr: SocketAddr,
    /// Where its gRPC API listens.
    pub grpc_addr: SocketAddr,
    /// Stops it (requests in flight finish).
    pub shutdown: Shutdown,
    /// Its task, which ends when it has stopped.
    pub task: JoinHandle<anyhow::Result<()>>,
}

impl RunningAccount {
    /// `http://<addr>` of the REST API.
    pub fn url(&self) -> String {
        format!("http://{}", self.http_addr)
    }
}

/// Builds the account service from `config` and runs it in the background.
pub async fn start(config: Config) -> RunningAccount {
    crate::init_logs();
    let app = Application::build(config)
        .await
        .expect("the account service builds");
    let http_addr = app.http_addr();
    let grpc_addr = app.grpc_addr();
    let shutdown = app.shutdown_handle();
    let task = tokio::spawn(app.run_until_stopped());
    RunningAccount {
        http_addr,
        grpc_addr,
        shutdown,
        task,
    }
}

/// A signed-in user.
#[derive(Debug, Clone)]
pub struct User {
    /// The user's id.
    pub id: Uuid,
    /// An access token of the user's.
    pub token: String,
}

static USER_SEQ: AtomicU64 = AtomicU64::new(0);

/// A client of the account service's REST API that registers users, signs
/// them in and grants them roles, with the admin signed in; cheap to clone
/// into tasks.
#[derive(Debug, Clone)]
pub struct Accounts {
    /// The HTTP client (also for requests to the other services).
    pub client: reqwest::Client,
    /// `http://127.0.0.1:<port>` of the account service.
    pub account_url: String,
    /// The platform admin, signed in.
    pub admin: User,
}

impl Accounts {
    /// A client of the account service at `account_url`, signing the admin in.
    pub async fn sign_in(client: reqwest::Client, account_url: String) -> Self {
        let mut accounts = Self {
            client,
            account_url,
            admin: User {
                id: Uuid::nil(),
                token: String::new(),
            },
        };
        accounts.admin = accounts.login(ADMIN_EMAIL, ADMIN_PASSWORD).await;
        accounts
    }

    /// `POST /v1/auth/register` of a customer with [`PASSWORD`]; the answer.
    pub async fn register(&self, username: &str, email: &str) -> Reply {
        send(
            self.client
                .post(format!("{}/v1/auth/register", self.account_url))
                .json(&json!({
                    "name": "Shopper",
                    "username": username,
                    "email": email,
                    "password": PASSWORD,
                })),
        )
        .await
    }

    /// Registers a new customer and signs it in.
    pub async fn customer(&self) -> User {
        self.customer_with_email().await.0
    }

    /// Registers a new customer and signs it in; also its email (to sign
    /// in again, with [`PASSWORD`]).
    pub async fn customer_with_email(&self) -> (User, String) {
        let n = USER_SEQ.fetch_add(1, Ordering::Relaxed);
        let username = format!("u{n}-{}", &Uuid::new_v4().simple().to_string()[..12]);
        let email = format!("{username}@example.com");
        self.register(&username, &email).await.expect(201);
        (self.login(&email, PASSWORD).await, email)
    }

    /// `n` new customers, registered 32 at a time.
    pub async fn customers(&self, n: usize) -> Vec<User> {
        futures::stream::iter(0..n)
            .map(|_| self.customer())
            .buffer_unordered(32)
            .collect()
            .await
    }

    /// Signs in by email (asserting 200).
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
            token: reply
                .body
                .get("access_token")
                .and_then(|t| t.as_str())
                .expect("a login answers an access token")
                .to_owned(),
        }
    }

    /// The admin gives `user` the `role` (asserting 200). The account
    /// service answers the new role at once; a host applies it to the
    /// user's existing tokens within a second (the pushed role change).
    pub async fn grant_role(&self, user: &User, role: &str) {
        let reply = send(
            self.client
                .patch(format!("{}/v1/admin/users/{}", self.account_url, user.id))
                .bearer_auth(&self.admin.token)
                .json(&json!({"role": role})),
        )
        .await;
        reply.expect(200);
        assert_eq!(reply.body["role"], role, "{}", reply.body);
    }

    /// A new customer the admin made a seller, signed in again after that:
    /// its token carries the role, so a host accepts it as a seller at once.
    pub async fn seller(&self) -> User {
        let (user, email) = self.customer_with_email().await;
        self.grant_role(&user, "seller").await;
        self.login(&email, PASSWORD).await
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
}
