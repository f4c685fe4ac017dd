//! Builds the plugin components in `plugins/`, its own cargo workspace, for
//! `wasm32-wasip2`. The main workspace never builds guests: tests and the demo
//! call [`build`] and load the `.wasm` files from the directory it returns.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The target every plugin is built for.
const TARGET: &str = "wasm32-wasip2";

/// Builds every crate of the plugins workspace (the SDK, the examples and the
/// misbehaving test plugins) and returns the directory holding the built
/// components, `plugins/target/wasm32-wasip2/release` (`…/debug` when
/// `release` is false; both profiles are optimised, `debug` keeps overflow
/// checks and debug assertions). Installs the target with rustup first if
/// the toolchain lacks it.
pub fn build(release: bool) -> Result<PathBuf> {
    let dir = plugins_dir();
    crate::ensure_rust_target(&dir, TARGET)?;

    let mut cargo = Command::new("cargo");
    cargo.current_dir(&dir).args(["build", "--target", TARGET]);
    if release {
        cargo.arg("--release");
    }
    // `cargo xtask` runs under the root workspace's cargo: its target
    // directory must not leak into this workspace's build, and the plain
    // `cargo` proxy picks the toolchain from the root's rust-toolchain.toml.
    cargo
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR");
    let status = cargo
        .status()
        .with_context(|| format!("running cargo build in {}", dir.display()))?;
    if !status.success() {
        bail!(
            "building the plugins in {} failed ({status})",
            dir.display()
        );
    }

    let out = output_dir(release);
    if !out.is_dir() {
        bail!(
            "the plugin build succeeded but {} is missing",
            out.display()
        );
    }
    Ok(out)
}

/// The path of one release-built plugin component, by crate name: e.g.
/// `component("volume-pricing")` is
/// `plugins/target/wasm32-wasip2/release/volume_pricing.wasm`. Call
/// [`build`]`(true)` first; this only names the file.
#[allow(dead_code)] // For callers that want one file; `build` returns the folder.
pub fn component(name: &str) -> PathBuf {
    output_dir(true).join(format!("{}.wasm", name.replace('-', "_")))
}

/// `plugins/` in this repository.
fn plugins_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        .join("plugins")
}

fn output_dir(release: bool) -> PathBuf {
    let profile = if release { "release" } else { "debug" };
    plugins_dir().join("target").join(TARGET).join(profile)
}
