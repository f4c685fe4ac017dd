//! Configuration, from `SHOPEEZY_*` environment variables (or the same flags).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use shopeezy_common::events::amqp::DEFAULT_EXCHANGE;

/// The notifier: consumes order and user events and keeps the notifications
/// it would send, readable by their owner.
///
/// Every setting is an environment variable (shown in brackets) or a flag.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "shopeezy-notifier",
    version,
    about,
    long_about = None,
    after_help = "`shopeezy-notifier healthcheck [ADDR]` checks the /healthz of the service running at ADDR (default: SHOPEEZY_NOTIFIER_HTTP_ADDR) and exits 0 when it answers 200."
)]
pub struct Config {
    /// Database: `sqlite://path` (created when missing) or `postgres://…`.
    #[arg(
        long,
        env = "SHOPEEZY_NOTIFIER_DATABASE_URL",
        default_value = "sqlite://data/notifier.db"
    )]
    pub database_url: String,

    /// Most database connections the service opens.
    #[arg(
        long,
        env = "SHOPEEZY_NOTIFIER_DATABASE_MAX_CONNECTIONS",
        default_value_t = 8
    )]
    pub database_max_connections: u32,

    /// REST listen address.
    #[arg(
        long,
        env = "SHOPEEZY_NOTIFIER_HTTP_ADDR",
        default_value = "127.0.0.1:8082"
    )]
    pub http_addr: SocketAddr,

    /// RabbitMQ to consume events from.
    #[arg(
        long,
        env = "SHOPEEZY_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f",
        hide_env_values = true
    )]
    pub amqp_url: String,

    /// The topic exchange the services publish events to.
    #[arg(long, env = "SHOPEEZY_AMQP_EXCHANGE", default_value = DEFAULT_EXCHANGE)]
    pub amqp_exchange: String,

    /// The notifier's durable (quorum) queue, bound to `order.*` and
    /// `user.registered`; its dead letters go to `<queue>.dead`.
    #[arg(
        long,
        env = "SHOPEEZY_NOTIFIER_QUEUE",
        default_value = "shopeezy.notifier"
    )]
    pub queue: String,

    /// Redeliveries of a message whose handling keeps failing before it is
    /// dead-lettered: it is tried 1 + this many times (the queue's
    /// `x-delivery-limit`).
    #[arg(long, env = "SHOPEEZY_NOTIFIER_DELIVERY_LIMIT", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub delivery_limit: u32,

    /// Unacknowledged messages the broker may hand the notifier at once.
    #[arg(long, env = "SHOPEEZY_NOTIFIER_PREFETCH", default_value_t = 32,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub prefetch: u16,

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
}

impl Config {
    /// The defaults, as if no variable were set (tests start from this).
    pub fn defaults() -> Self {
        Self::try_parse_args(["shopeezy-notifier"]).expect("the defaults are a configuration")
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

    /// The token-check timeout.
    pub fn auth_timeout(&self) -> Duration {
        Duration::from_millis(self.auth_timeout_ms)
    }

    /// The exchange that dead letters are sent to.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.queue)
    }

    /// The queue that keeps dead letters for a person to look at.
    pub fn dead_letter_queue(&self) -> String {
        format!("{}.dead", self.queue)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A developer's `SHOPEEZY_*` variables do not reach a configuration
    /// parsed from arguments (checked in a child process with some set, one
    /// of them to garbage).
    #[test]
    fn the_environment_is_not_read() {
        let env = [
            ("SHOPEEZY_NOTIFIER_HTTP_ADDR", "garbage"),
            ("SHOPEEZY_NOTIFIER_QUEUE", "developer.queue"),
        ];
        if !shopeezy_common::config::in_child_with_env(
            module_path!(),
            "the_environment_is_not_read",
            &env,
        ) {
            return;
        }
        assert!(
            Config::try_parse_from(["shopeezy-notifier"]).is_err(),
            "the garbage is in the environment"
        );
        let config =
            Config::try_parse_args(["shopeezy-notifier"]).expect("the environment is not read");
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:8082");
        assert_eq!(config.queue, "shopeezy.notifier");
        let config = Config::try_parse_args(["shopeezy-notifier", "--http-addr", "127.0.0.1:0"])
            .expect("the arguments are read");
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:0");
    }
}
