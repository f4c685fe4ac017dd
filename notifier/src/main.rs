//! `shopeezy-notifier`: see `--help` for every setting; `shopeezy-notifier
//! healthcheck` checks a running one's `/healthz` (exit 0 when it answers 200).

use clap::Parser;
use shopeezy_notifier::{Application, Config};

fn main() -> anyhow::Result<()> {
    // `shopeezy-notifier healthcheck`: the container images' health check.
    shopeezy_common::healthcheck::exit_if_requested(
        "SHOPEEZY_NOTIFIER_HTTP_ADDR",
        "127.0.0.1:8082",
    );
    serve()
}

#[tokio::main]
async fn serve() -> anyhow::Result<()> {
    shopeezy_common::telemetry::init("info,sqlx=warn");
    let config = Config::parse();
    let app = Application::build(config).await?;
    app.shutdown_handle().on_signals();
    app.run_until_stopped().await
}
