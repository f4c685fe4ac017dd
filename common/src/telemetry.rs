//! Structured logs: `SHOPEEZY_LOG` (or `RUST_LOG`) filters, and
//! `SHOPEEZY_LOG_FORMAT=json` switches from text lines to JSON lines.

use tracing_subscriber::EnvFilter;

/// Installs the process' log subscriber; a second call (as in tests) is a no-op.
pub fn init(default_filter: &str) {
    let filter = std::env::var("SHOPEEZY_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| default_filter.to_owned());
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("SHOPEEZY_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.compact().try_init()
    };
}
