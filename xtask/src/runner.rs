//! `cargo xtask plugin run`: the local runner, like Shopify's
//! function-runner. It uses the host's own runtime and limits, so its report
//! is the same document `POST /v1/plugins/{id}/dry-run` answers, and a
//! component fails here exactly as it would on the server.

use std::path::Path;

use anyhow::{Context, Result, bail};
use shopeezy_host::plugins::io::{Report, SampleCart};
use shopeezy_host::plugins::limits::Limits;
use shopeezy_host::plugins::runtime::{Hook, Runtime};

/// Runs `component` as a `hook` plugin on the sample cart in `input`.
pub fn run(component: &Path, hook: &str, input: &Path, config: Option<&str>) -> Result<()> {
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
    let runtime = Runtime::new(Limits::default())?;
    let compiled = match runtime.compile(hook, &bytes) {
        Ok(c) => c,
        Err(reason) => {
            bail!("the server would refuse this component (422 invalid_component): {reason}")
        }
    };
    let cart = sample.to_input(&config, chrono_now_ms());
    let report = Report::new(
        runtime.call(&compiled, &cart),
        runtime.limits.fuel(cart.lines.len()),
    );
    println!("{}", serde_json::to_string_pretty(&report)?);
    if let Some(failure) = &report.failure {
        bail!("the plugin failed ({:?}): {}", failure.kind, failure.reason);
    }
    Ok(())
}

fn chrono_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
