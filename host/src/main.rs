//! `shopeezy-host`: the service (see `--help` for every setting), and
//! `shopeezy-host plugin run`, the local plugin runner, and `shopeezy-host
//! healthcheck`, which checks a running one's `/healthz` (exit 0 on a 200).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shopeezy_host::plugins::io::SampleCart;
use shopeezy_host::plugins::local;
use shopeezy_host::plugins::runtime::Hook;
use shopeezy_host::{Application, Config};

#[derive(Debug, Parser)]
#[command(
    name = "shopeezy-host",
    version,
    about = "The host service: catalog, carts, checkout, orders, plugins and events.\n\nWithout a command it serves. Every setting is an environment variable (shown in brackets) or a flag.",
    args_conflicts_with_subcommands = true,
    after_help = "`shopeezy-host healthcheck [ADDR]` checks the /healthz of the service running at ADDR (default: SHOPEEZY_HOST_HTTP_ADDR) and exits 0 when it answers 200."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with one plugin component locally.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Run a component on a sample cart as the server would (same compile
    /// checks, same limits, from the same `SHOPEEZY_PLUGIN_*` settings) and
    /// print its output, fuel, time, memory and logs as dry-run reports them.
    Run {
        /// The component (.wasm).
        component: PathBuf,
        /// `pricing`, `promotion` or `validation`.
        #[arg(long)]
        hook: String,
        /// The sample cart (JSON, as `POST /v1/plugins/{id}/dry-run`'s `cart`).
        #[arg(long)]
        input: PathBuf,
        /// The merchant config (JSON text); default `{}` or the input's own.
        #[arg(long)]
        config: Option<String>,
    },
}

fn main() -> ExitCode {
    // `shopeezy-host healthcheck`: the container images' health check.
    shopeezy_common::healthcheck::exit_if_requested("SHOPEEZY_HOST_HTTP_ADDR", "127.0.0.1:8080");
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.config),
        Some(Command::Plugin {
            command:
                PluginCommand::Run {
                    component,
                    hook,
                    input,
                    config,
                },
        }) => run_plugin(&cli.config, &component, &hook, &input, config.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("shopeezy-host: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn serve(config: Config) -> anyhow::Result<ExitCode> {
    shopeezy_common::telemetry::init("info,sqlx=warn");
    let app = Application::build(config).await?;
    app.shutdown_handle().on_signals();
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}

/// Prints the report as JSON; fails (exit 1) when the component was refused
/// or the call failed.
#[tokio::main(flavor = "current_thread")]
async fn run_plugin(
    settings: &Config,
    component: &std::path::Path,
    hook: &str,
    input: &std::path::Path,
    config: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let hook = Hook::parse(hook)
        .with_context(|| format!("unknown hook {hook:?}: pricing, promotion or validation"))?;
    let bytes =
        std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    let text =
        std::fs::read_to_string(input).with_context(|| format!("reading {}", input.display()))?;
    let sample: SampleCart = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a sample cart", input.display()))?;
    let config = match config {
        Some(c) => serde_json::from_str::<serde_json::Value>(c)
            .context("--config is not JSON")?
            .to_string(),
        None => "{}".to_owned(),
    };
    let now_ms = chrono::Utc::now().timestamp_millis();
    let report = local::run(
        settings.plugin_limits(),
        hook,
        bytes,
        &sample,
        &config,
        now_ms,
    )
    .await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(failure) = &report.failure {
        eprintln!("the plugin failed ({:?}): {}", failure.kind, failure.reason);
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
