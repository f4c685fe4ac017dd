//! Configuration, from `SHOPEEZY_*` environment variables (or the same flags).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use shopeezy_common::events::RelaySettings;

use crate::http::cors::CorsOrigins;
use crate::tokens;

/// The account service: users, roles, passwords, tokens and revocation.
///
/// Every setting is an environment variable (shown in brackets) or a flag.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "shopeezy-account",
    version,
    about,
    long_about = None,
    after_help = "`shopeezy-account healthcheck [ADDR]` checks the /healthz of the service running at ADDR (default: SHOPEEZY_ACCOUNT_HTTP_ADDR) and exits 0 when it answers 200."
)]
pub struct Config {
    /// Database: `sqlite://path` (created when missing) or `postgres://…`.
    #[arg(
        long,
        env = "SHOPEEZY_ACCOUNT_DATABASE_URL",
        default_value = "sqlite://data/account.db"
    )]
    pub database_url: String,

    /// Most database connections the service opens.
    #[arg(
        long,
        env = "SHOPEEZY_ACCOUNT_DATABASE_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub database_max_connections: u32,

    /// Redis for token revocation (the fast path: revocations are recorded in
    /// the database too) and login throttling; unset keeps both in-process
    /// (one replica only). When set but unreachable, token checks fail
    /// closed (503).
    #[arg(long, env = "SHOPEEZY_REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of every Redis key this service writes.
    #[arg(long, env = "SHOPEEZY_REDIS_KEY_PREFIX", default_value = "shopeezy:")]
    pub redis_key_prefix: String,

    /// REST listen address.
    #[arg(
        long,
        env = "SHOPEEZY_ACCOUNT_HTTP_ADDR",
        default_value = "127.0.0.1:8081"
    )]
    pub http_addr: SocketAddr,

    /// gRPC (`shopeezy.auth.v1.AuthService`) listen address.
    #[arg(
        long,
        env = "SHOPEEZY_ACCOUNT_GRPC_ADDR",
        default_value = "127.0.0.1:50051"
    )]
    pub grpc_addr: SocketAddr,

    /// Folder for generated state (the signing key when none is configured).
    #[arg(long, env = "SHOPEEZY_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,

    /// Ed25519 private key (PKCS#8 PEM) that signs access tokens. Unset: read
    /// `SHOPEEZY_JWT_PRIVATE_KEY_FILE`, else generate one once into the data folder.
    #[arg(long, env = "SHOPEEZY_JWT_PRIVATE_KEY", hide_env_values = true)]
    pub jwt_private_key: Option<String>,

    /// File holding the Ed25519 private key (PKCS#8 PEM).
    #[arg(long, env = "SHOPEEZY_JWT_PRIVATE_KEY_FILE")]
    pub jwt_private_key_file: Option<PathBuf>,

    /// The tokens' issuer (`iss`).
    #[arg(long, env = "SHOPEEZY_JWT_ISSUER", default_value = "shopeezy-account")]
    pub jwt_issuer: String,

    /// The tokens' audience (`aud`).
    #[arg(long, env = "SHOPEEZY_JWT_AUDIENCE", default_value = "shopeezy")]
    pub jwt_audience: String,

    /// Lifetime of an access token, in seconds.
    #[arg(long, env = "SHOPEEZY_ACCESS_TOKEN_TTL_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(60..=86_400))]
    pub access_token_ttl_secs: u64,

    /// Failed logins for one account from one client address before that
    /// address is throttled (429) for that account; other addresses are not.
    #[arg(long, env = "SHOPEEZY_LOGIN_MAX_FAILURES", default_value_t = 5)]
    pub login_max_failures: u32,

    /// Failed logins from one client address (an IPv6 /64), across all
    /// accounts, before that address is throttled (429) for every account.
    #[arg(
        long,
        env = "SHOPEEZY_LOGIN_MAX_FAILURES_PER_ADDRESS",
        default_value_t = 50
    )]
    pub login_max_failures_per_address: u32,

    /// The window, in seconds, in which failed logins are counted.
    #[arg(long, env = "SHOPEEZY_LOGIN_WINDOW_SECS", default_value_t = 900)]
    pub login_window_secs: u64,

    /// Email of the admin made to exist at start (with the password below).
    #[arg(long, env = "SHOPEEZY_ADMIN_EMAIL")]
    pub admin_email: Option<String>,

    /// Password of that admin, used only when the user is created.
    #[arg(long, env = "SHOPEEZY_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,

    /// Argon2id memory cost in KiB (OWASP's minimum, 19 MiB, by default).
    #[arg(long, env = "SHOPEEZY_ARGON2_MEMORY_KIB", default_value_t = 19_456)]
    pub argon2_memory_kib: u32,

    /// Argon2id iterations.
    #[arg(long, env = "SHOPEEZY_ARGON2_ITERATIONS", default_value_t = 2)]
    pub argon2_iterations: u32,

    /// Origins whose pages may call the REST API from a browser (CORS):
    /// `*`, any origin, or a comma-separated list of exact origins
    /// (`http://127.0.0.1:8080,https://console.example.com`). Any origin is
    /// safe because the API authenticates with bearer tokens only, never
    /// cookies, so credentials are never allowed cross-origin.
    #[arg(long, env = "SHOPEEZY_ACCOUNT_CORS_ORIGINS", default_value = "*")]
    pub cors_origins: CorsOrigins,

    /// Events: the outbox relay (`SHOPEEZY_AMQP_URL`, `SHOPEEZY_OUTBOX_*`).
    #[command(flatten)]
    pub events: RelaySettings,
}

impl Config {
    /// The defaults, as if no variable were set (tests start from this).
    pub fn defaults() -> Self {
        Self::try_parse_args(["shopeezy-account"]).expect("the defaults are a configuration")
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

    /// What the token keys are made from: the key (or the file holding it,
    /// or `<data dir>/jwt-ed25519.pem`), issuer, audience and lifetime.
    pub fn token_settings(&self) -> tokens::Settings {
        tokens::Settings {
            private_key: self.jwt_private_key.clone(),
            private_key_file: self.jwt_private_key_file.clone(),
            generated_key_file: self.data_dir.join("jwt-ed25519.pem"),
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
            ttl_secs: self.access_token_ttl_secs,
        }
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
            ("SHOPEEZY_ACCOUNT_HTTP_ADDR", "garbage"),
            ("SHOPEEZY_ADMIN_EMAIL", "developer@example.com"),
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
            Config::try_parse_from(["shopeezy-account"]).is_err(),
            "the garbage is in the environment"
        );
        let config =
            Config::try_parse_args(["shopeezy-account"]).expect("the environment is not read");
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:8081");
        assert_eq!(config.admin_email, None);
        assert_eq!(config.events.amqp_url, None);
        let config = Config::try_parse_args(["shopeezy-account", "--http-addr", "127.0.0.1:0"])
            .expect("the arguments are read");
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:0");
    }
}
