//! The host in tests: its test configuration, the host started on it, and
//! [`Stack`], the account service and the host (one replica or more on one
//! database) running together for one test.

use std::net::SocketAddr;
use std::time::Duration;

use shopeezy_common::db::Db;
use shopeezy_common::events::Relay;
use shopeezy_common::shutdown::Shutdown;
use shopeezy_host::{Application, Config};

use crate::account::{self, Accounts};
use crate::servers::{self, TcpProxy};
use crate::{Backend, Storage};

/// The host's configuration for a test on `storage`: the defaults (no
/// `SHOPEEZY_*` variable is read), a port chosen by the system, a database
/// of its own and a small pool. Its `auth_grpc_url` is still to be set.
/// `None` when the backend's servers cannot be reached.
pub async fn config(storage: &Storage) -> Option<Config> {
    let mut config =
        Config::try_parse_args(["shopeezy-host"]).expect("the defaults are a configuration");
    config.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.database_url = storage.database_url("host").await?;
    config.database_max_connections = 12;
    Some(config)
}

/// A host running in the background of a test.
#[derive(Debug)]
pub struct RunningHost {
    /// `http://127.0.0.1:<port>` of its REST API.
    pub url: String,
    /// Its database.
    pub db: Db,
    /// Its outbox relay.
    pub relay: Relay,
    /// Stops it.
    pub shutdown: Shutdown,
}

/// Builds a host from `config` and runs it in the background.
pub async fn start(config: Config) -> RunningHost {
    crate::init_logs();
    let app = Application::build(config).await.expect("the host builds");
    let running = RunningHost {
        url: format!("http://{}", app.http_addr()),
        db: app.state().db.clone(),
        relay: app.state().relay.clone(),
        shutdown: app.shutdown_handle(),
    };
    tokio::spawn(app.run_until_stopped());
    running
}

/// What a [`Stack`] is to run, to change before [`StackConfig::start`].
#[derive(Debug)]
pub struct StackConfig {
    /// Where the services keep their data.
    pub storage: Storage,
    /// The account service's configuration ([`account::config`], with the
    /// login throttle out of the way: shoppers in a race share no account).
    pub account: shopeezy_account::Config,
    /// The host's configuration ([`config`]); its `auth_grpc_url` is set at
    /// start.
    pub host: Config,
    /// Host replicas on the one database (at least one).
    pub host_replicas: usize,
    /// Put a [`TcpProxy`] between the hosts and the account's gRPC server.
    pub auth_through_proxy: bool,
    /// Put a [`TcpProxy`] between the hosts and PostgreSQL (production
    /// backend only).
    pub database_through_proxy: bool,
}

impl StackConfig {
    /// The configuration of a stack on `backend`; `None` when the backend's
    /// servers cannot be reached (the test is skipped, or fails under CI).
    pub async fn new(backend: Backend) -> Option<Self> {
        let storage = Storage::new(backend).await?;
        let mut account = account::config(&storage).await?;
        account.login_max_failures = 1000;
        let host = config(&storage).await?;
        Some(Self {
            storage,
            account,
            host,
            host_replicas: 1,
            auth_through_proxy: false,
            database_through_proxy: false,
        })
    }

    /// Starts the account service, then the host replicas, and signs the
    /// admin in.
    pub async fn start(self) -> Stack {
        let Self {
            storage,
            account,
            mut host,
            host_replicas,
            auth_through_proxy,
            database_through_proxy,
        } = self;
        let mut account_config = account;
        let account = account::start(account_config.clone()).await;
        // A restart binds the same ports, so the hosts find it again.
        account_config.http_addr = account.http_addr;
        account_config.grpc_addr = account.grpc_addr;
        let mut shutdowns = Vec::new();

        let auth_proxy = if auth_through_proxy {
            let proxy = TcpProxy::start(&account.grpc_addr.to_string())
                .await
                .expect("the proxy starts");
            host.auth_grpc_url = format!("http://{}", proxy.host_port());
            Some(proxy)
        } else {
            host.auth_grpc_url = format!("http://{}", account.grpc_addr);
            None
        };
        let db_proxy = if database_through_proxy && storage.backend.has_servers() {
            let proxy = TcpProxy::start(&servers::url_host_port(&host.database_url))
                .await
                .expect("the proxy starts");
            host.database_url = servers::url_via(&host.database_url, &proxy.host_port());
            Some(proxy)
        } else {
            None
        };

        // The console's pages sign people in at this account service.
        host.account_url = account.url();
        let mut hosts = Vec::new();
        for _ in 0..host_replicas.max(1) {
            let running = start(host.clone()).await;
            shutdowns.push(running.shutdown.clone());
            hosts.push(running);
        }

        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        let accounts = Accounts::sign_in(client, account.url()).await;
        Stack {
            accounts,
            account_grpc: account.grpc_addr,
            account: Some(account),
            account_config,
            hosts,
            host_config: host,
            auth_proxy,
            db_proxy,
            shutdowns,
            storage,
        }
    }
}

/// The account service and the host replicas of one test, stopped when
/// dropped (then their data is removed).
#[derive(Debug)]
pub struct Stack {
    /// The account service's client, with the admin signed in.
    pub accounts: Accounts,
    /// Where the account service's gRPC API listens (not through a proxy).
    pub account_grpc: SocketAddr,
    /// The account service, while it runs.
    account: Option<account::RunningAccount>,
    /// Its configuration, with the ports it bound (to start it again).
    account_config: shopeezy_account::Config,
    /// The host replicas, on one database.
    pub hosts: Vec<RunningHost>,
    /// The configuration the hosts run with (to start another).
    pub host_config: Config,
    /// The proxy the hosts reach the account service through, when asked for.
    pub auth_proxy: Option<TcpProxy>,
    /// The proxy the hosts reach PostgreSQL through, when asked for.
    pub db_proxy: Option<TcpProxy>,
    shutdowns: Vec<Shutdown>,
    /// Where the services keep their data (dropped last).
    pub storage: Storage,
}

impl Stack {
    /// The host's database (shared by its replicas).
    pub fn host_db(&self) -> &Db {
        &self.hosts[0].db
    }

    /// Stops the account service (requests in flight finish, streams end)
    /// and waits until it has stopped.
    pub async fn stop_account(&mut self) {
        if let Some(account) = self.account.take() {
            account.shutdown.trigger();
            let _ = tokio::time::timeout(Duration::from_secs(30), account.task).await;
        }
    }

    /// Starts the account service again on the same configuration: the same
    /// database, signing key and ports.
    pub async fn start_account(&mut self) {
        self.stop_account().await;
        let mut tries = 0;
        loop {
            match shopeezy_account::Application::build(self.account_config.clone()).await {
                Ok(app) => {
                    let shutdown = app.shutdown_handle();
                    let task = tokio::spawn(app.run_until_stopped());
                    self.account = Some(account::RunningAccount {
                        http_addr: self.account_config.http_addr,
                        grpc_addr: self.account_config.grpc_addr,
                        shutdown,
                        task,
                    });
                    return;
                }
                // The old listeners may take a moment to be released.
                Err(_) if tries < 50 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("the account service starts again: {e:#}"),
            }
        }
    }

    /// Stops `shutdown` with the stack (e.g. of a service or a relay the
    /// test started itself).
    pub fn stop_on_drop(&mut self, shutdown: Shutdown) {
        self.shutdowns.push(shutdown);
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Some(account) = &self.account {
            account.shutdown.trigger();
        }
        for shutdown in &self.shutdowns {
            shutdown.trigger();
        }
    }
}
