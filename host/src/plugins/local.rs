//! The local runner behind `shopeezy-host plugin run` (and `cargo xtask
//! plugin run`), like Shopify's function-runner: a component is checked and
//! compiled by the server's own [`Compiler`] under the server's limits, then
//! called once on a sample cart, and the answer is the same [`Report`]
//! `POST /v1/plugins/{id}/dry-run` gives. A component fails here exactly as
//! it would on the server.

use sha2::{Digest, Sha256};

use super::compile::{CompileLimits, Compiler};
use super::io::{Report, SampleCart};
use super::limits::Limits;
use super::runtime::{Hook, Runtime};

/// Why the runner could not call the component at all.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The server would refuse the upload (422 `invalid_component`).
    #[error("the server would refuse this component (422 invalid_component): {0}")]
    Component(String),
    /// The runtime could not be set up.
    #[error("starting the plugin runtime: {0:#}")]
    Runtime(anyhow::Error),
}

/// Compiles `bytes` as a `hook` plugin under `limits` and calls it once on
/// `sample` with `config` (the merchant's JSON, or the sample's own when
/// that has one) at `now_ms`.
pub async fn run(
    limits: Limits,
    hook: Hook,
    bytes: Vec<u8>,
    sample: &SampleCart,
    config: &str,
    now_ms: i64,
) -> Result<Report, Refused> {
    let runtime = Runtime::new(limits).map_err(Refused::Runtime)?;
    let sha = format!("{:x}", Sha256::digest(&bytes));
    let compiled = Compiler::new(CompileLimits::default())
        .compile(&runtime, hook, &sha, bytes)
        .await
        .map_err(Refused::Component)?;
    let cart = sample.to_input(config, now_ms);
    let call = runtime.call(&compiled, &cart);
    Ok(Report::new(call, &runtime.limits, cart.lines.len()))
}
