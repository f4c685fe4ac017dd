//! Configuration, from `SHOPEEZY_*` environment variables (or the same flags).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// The host service: catalog, carts, checkout, orders, plugins and events.
///
/// Every setting is an environment variable (shown in brackets) or a flag.
#[derive(Debug, Clone, Parser)]
#[command(name = "shopeezy-host", version, about, long_about = None)]
pub struct Config {
    /// Database: `sqlite://path` (created when missing) or `postgres://…`.
    #[arg(
        long,
        env = "SHOPEEZY_HOST_DATABASE_URL",
        default_value = "sqlite://data/host.db"
    )]
    pub database_url: String,

    /// Most database connections the service opens.
    #[arg(
        long,
        env = "SHOPEEZY_HOST_DATABASE_MAX_CONNECTIONS",
        default_value_t = 32
    )]
    pub database_max_connections: u32,

    /// REST listen address.
    #[arg(
        long,
        env = "SHOPEEZY_HOST_HTTP_ADDR",
        default_value = "127.0.0.1:8080"
    )]
    pub http_addr: SocketAddr,

    /// The account service's gRPC address, which checks every bearer token.
    #[arg(
        long,
        env = "SHOPEEZY_AUTH_GRPC_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub auth_grpc_url: String,

    /// How long a token check may take before the request answers 503, in ms.
    #[arg(long, env = "SHOPEEZY_AUTH_TIMEOUT_MS", default_value_t = 2000)]
    pub auth_timeout_ms: u64,

    /// Most attempts of a checkout that meets a serialization failure or a
    /// deadlock (PostgreSQL) before it answers 503.
    #[arg(long, env = "SHOPEEZY_CHECKOUT_MAX_ATTEMPTS", default_value_t = 12)]
    pub checkout_max_attempts: u32,
}

impl Config {
    /// The defaults, as if no variable were set (tests start from this).
    pub fn defaults() -> Self {
        Self::parse_from(["shopeezy-host"])
    }

    /// The token-check timeout.
    pub fn auth_timeout(&self) -> Duration {
        Duration::from_millis(self.auth_timeout_ms)
    }
}
