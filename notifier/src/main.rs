//! `shopeezy-notifier`: see `--help` for every setting.

use clap::Parser;
use shopeezy_notifier::{Application, Config};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shopeezy_common::telemetry::init("info,sqlx=warn");
    let config = Config::parse();
    let app = Application::build(config).await?;
    app.shutdown_handle().on_signals();
    app.run_until_stopped().await
}
