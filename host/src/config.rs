//! Configuration, from `SHOPEEZY_*` environment variables (or the same flags).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use shopeezy_common::events::RelaySettings;

use crate::plugins::limits::Limits;

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

    /// The account service's gRPC address: the token keys (`GetKeys`) and
    /// the revocation stream (`WatchRevocations`) come from there; tokens
    /// are verified here.
    #[arg(
        long,
        env = "SHOPEEZY_AUTH_GRPC_URL",
        default_value = "http://127.0.0.1:50051"
    )]
    pub auth_grpc_url: String,

    /// The account service's REST address as a browser reaches it: the
    /// console and storefront (`/console/`, `/shop/`) sign people in there
    /// (the account service answers CORS for them) and are allowed to
    /// connect nowhere else but this host.
    #[arg(
        long,
        env = "SHOPEEZY_HOST_ACCOUNT_URL",
        default_value = "http://127.0.0.1:8081",
        value_parser = shopeezy_common::origin::parse_origin,
    )]
    pub account_url: String,

    /// How long connecting to the account service or fetching its keys may
    /// take, in ms.
    #[arg(long, env = "SHOPEEZY_AUTH_TIMEOUT_MS", default_value_t = 2000)]
    pub auth_timeout_ms: u64,

    /// How long, in seconds, the revocation view is trusted after the stream
    /// from the account service drops (counted from the account service's
    /// last heartbeat); after that, tokens are answered 503 until it is back.
    #[arg(long, env = "SHOPEEZY_AUTH_STALE_SECS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(5..=86_400))]
    pub auth_stale_secs: u64,

    /// Most attempts of a checkout that meets a serialization failure or a
    /// deadlock (PostgreSQL) before it answers 503.
    #[arg(long, env = "SHOPEEZY_CHECKOUT_MAX_ATTEMPTS", default_value_t = 20)]
    pub checkout_max_attempts: u32,

    /// Most checkouts one group-commit batch (one transaction) holds. A
    /// batch is whatever queued while the previous one committed, so a lone
    /// shopper never waits; this only bounds a batch under load.
    #[arg(long, env = "SHOPEEZY_CHECKOUT_MAX_BATCH", default_value_t = 64)]
    pub checkout_max_batch: usize,

    /// How often this replica checks for plugin changes, in ms (a change is in
    /// force on every replica within about this long).
    #[arg(long, env = "SHOPEEZY_PLUGIN_POLL_MS", default_value_t = 250)]
    pub plugin_poll_ms: u64,

    /// Plugin fuel (≈ wasm instructions) per call on an empty cart.
    #[arg(long, env = "SHOPEEZY_PLUGIN_FUEL", default_value_t = Limits::default().fuel_base)]
    pub plugin_fuel: u64,

    /// Extra plugin fuel per cart line.
    #[arg(long, env = "SHOPEEZY_PLUGIN_FUEL_PER_LINE", default_value_t = Limits::default().fuel_per_line)]
    pub plugin_fuel_per_line: u64,

    /// Plugin wall time per call on an empty cart, in ms (plus 0.5 ms per line).
    #[arg(long, env = "SHOPEEZY_PLUGIN_TIME_MS", default_value_t = Limits::default().time_base_ms)]
    pub plugin_time_ms: u64,

    /// Largest linear memory of a plugin call, in MiB.
    #[arg(long, env = "SHOPEEZY_PLUGIN_MEMORY_MIB", default_value_t = Limits::default().memory_bytes >> 20)]
    pub plugin_memory_mib: usize,

    /// Largest plugin component upload, in KiB.
    #[arg(long, env = "SHOPEEZY_PLUGIN_MAX_KIB", default_value_t = Limits::default().module_bytes >> 10)]
    pub plugin_max_kib: usize,

    /// Fuel of all the plugin calls of one cart view or checkout together, on
    /// an empty cart.
    #[arg(long, env = "SHOPEEZY_PLUGIN_REQUEST_FUEL", default_value_t = Limits::default().request_fuel_base)]
    pub plugin_request_fuel: u64,

    /// Extra request plugin fuel per cart line.
    #[arg(long, env = "SHOPEEZY_PLUGIN_REQUEST_FUEL_PER_LINE", default_value_t = Limits::default().request_fuel_per_line)]
    pub plugin_request_fuel_per_line: u64,

    /// Wall time of all the plugin calls of one cart view or checkout
    /// together, in ms on an empty cart (plus 1.25 ms per line).
    #[arg(long, env = "SHOPEEZY_PLUGIN_REQUEST_TIME_MS", default_value_t = Limits::default().request_time_base_ms)]
    pub plugin_request_time_ms: u64,

    /// Most lines (different products) of one cart, and of a dry run's
    /// sample cart (beyond: 409 `cart_full`, 422).
    #[arg(long, env = "SHOPEEZY_CART_MAX_LINES", default_value_t = Limits::default().cart_lines)]
    pub cart_max_lines: usize,

    /// Most dry runs of one merchant running at once (beyond: 429).
    #[arg(long, env = "SHOPEEZY_PLUGIN_DRY_RUNS", default_value_t = Limits::default().dry_runs_per_merchant)]
    pub plugin_dry_runs: usize,

    /// Events: the outbox relay (`SHOPEEZY_AMQP_URL`, `SHOPEEZY_OUTBOX_*`).
    #[command(flatten)]
    pub events: RelaySettings,
}

impl Config {
    /// The defaults, as if no variable were set (tests start from this).
    pub fn defaults() -> Self {
        Self::try_parse_args(["shopeezy-host"]).expect("the defaults are a configuration")
    }

    /// The configuration given by `args` alone (the first is the program's
    /// name), as for a test: unlike [`Parser::parse_from`], no `SHOPEEZY_*`
    /// environment variable is read.
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        shopeezy_common::config::parse_args_only(args)
    }

    /// The limits of every plugin call.
    pub fn plugin_limits(&self) -> Limits {
        Limits {
            fuel_base: self.plugin_fuel,
            fuel_per_line: self.plugin_fuel_per_line,
            time_base_ms: self.plugin_time_ms,
            memory_bytes: self.plugin_memory_mib << 20,
            module_bytes: self.plugin_max_kib << 10,
            request_fuel_base: self.plugin_request_fuel,
            request_fuel_per_line: self.plugin_request_fuel_per_line,
            request_time_base_ms: self.plugin_request_time_ms,
            dry_runs_per_merchant: self.plugin_dry_runs,
            cart_lines: self.cart_max_lines,
            ..Limits::default()
        }
    }

    /// The account service's connect and key-fetch timeout.
    pub fn auth_timeout(&self) -> Duration {
        Duration::from_millis(self.auth_timeout_ms)
    }

    /// How long the revocation view is trusted after its stream drops.
    pub fn auth_stale(&self) -> Duration {
        Duration::from_secs(self.auth_stale_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The account service's address goes into the pages' security policy:
    /// only a bare origin is taken (lowercased), anything else stops the start.
    #[test]
    fn the_account_url_is_an_origin() {
        let parsed = Config::try_parse_args(["shopeezy-host", "--account-url", "HTTP://Acct:8081"])
            .expect("an origin");
        assert_eq!(parsed.account_url, "http://acct:8081");
        for bad in ["http://acct:8081/", "http://a;b", "acct:8081", "http://a b"] {
            assert!(
                Config::try_parse_args(["shopeezy-host", "--account-url", bad]).is_err(),
                "{bad:?} was taken"
            );
        }
    }

    /// A developer's `SHOPEEZY_*` variables do not reach a configuration
    /// parsed from arguments (checked in a child process with some set, one
    /// of them to garbage).
    #[test]
    fn the_environment_is_not_read() {
        let env = [
            ("SHOPEEZY_HOST_HTTP_ADDR", "garbage"),
            (
                "SHOPEEZY_HOST_DATABASE_URL",
                "postgres://developer@elsewhere/shop",
            ),
            (
                "SHOPEEZY_HOST_DATABASE_URL",
                "postgres://developer@elsewhere/shop",
            ),
            ("SHOPEEZY_AMQP_URL", "amqp://developer@elsewhere"),
        ];
        if !shopeezy_common::config::in_child_with_env(
            module_path!(),
            "the_environment_is_not_read",
            &env,
        ) {
            return;
        }
        assert!(
            Config::try_parse_from(["shopeezy-host"]).is_err(),
            "the garbage is in the environment"
        );
        let config =
            Config::try_parse_args(["shopeezy-host"]).expect("the environment is not read");
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.database_url, "sqlite://data/host.db");
        assert_eq!(config.events.amqp_url, None);
        let config = Config::try_parse_args(["shopeezy-host", "--http-addr", "127.0.0.1:0"])
            .expect("the arguments are read");
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:0");
    }
}
