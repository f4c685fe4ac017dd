//! The merchant console and the storefront, end to end in a real browser.
//!
//! Each test starts the account service and the host on a backend, makes
//! two sellers, and runs `testkit/e2e/console.mjs`, which
//! drives headless Chromium (Debian's `chromium` package) with
//! `playwright-core`: a seller signs in with the keyboard, creates a product
//! (a bad SKU's problem shows beside the SKU field), finds it, sets its
//! stock, uploads the `volume-pricing` example and dry-runs it on a sample
//! cart (the new price shows, with fuel, time, memory and logs beside their
//! limits); another seller cannot see that plugin; a shopper on a
//! phone-sized screen finds the product, puts 3 in the cart, sees the
//! plugin's price there and checks out; the admin opens the order, sees the
//! plugin version that priced it and marks it paid; the seller's plugin page
//! counts the shopper's calls. The shopper registers in the storefront (a
//! too-short password is refused beside its field first). Every page loads under 100 KB of assets and
//! asks no origin but the two services. Screenshots go to
//! `target/console-screenshots/<backend>/` (README's come from there).
//!
//! Without Node.js, Chromium or `testkit/e2e/node_modules` (`npm ci` there;
//! `cargo xtask test` runs it) the test is skipped with a `SKIPPED` line;
//! under `CI=true` it fails.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use shopeezy_testkit::servers::skip;
use shopeezy_testkit::{ADMIN_EMAIL, ADMIN_PASSWORD, Backend, PASSWORD, StackConfig, User};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the testkit is in the workspace")
        .to_owned()
}

/// The browser the tests drive.
fn chromium() -> PathBuf {
    std::env::var_os("SHOPEEZY_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// The volume-pricing example component, built by `cargo xtask test`.
fn volume_pricing() -> PathBuf {
    std::env::var_os("SHOPEEZY_TEST_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("plugins/target/wasm32-wasip2/release"))
        .join("volume_pricing.wasm")
}

/// Whether everything the browser test needs is here; otherwise skipped
/// (or, under CI, failed) with what is missing and how to get it.
fn ready() -> Option<()> {
    let node = std::process::Command::new("node").arg("--version").output();
    if node.is_err() {
        return skip(
            "Node.js is not installed (Debian: apt install nodejs npm)",
            "the console tests need Node.js",
        );
    }
    if !chromium().exists() {
        return skip(
            &format!(
                "{} is missing (Debian: apt install chromium)",
                chromium().display()
            ),
            "the console tests need Chromium (.ci/run installs Debian's chromium)",
        );
    }
    if !repo_root()
        .join("testkit/e2e/node_modules/playwright-core")
        .exists()
    {
        return skip(
            "playwright-core is not installed (npm ci --prefix testkit/e2e; cargo xtask test does it)",
            "the console tests need testkit/e2e/node_modules (npm ci --prefix testkit/e2e)",
        );
    }
    if !volume_pricing().exists() {
        return skip(
            &format!(
                "{} is not built (cargo xtask test builds it)",
                volume_pricing().display()
            ),
            "the console tests need the volume-pricing example built",
        );
    }
    Some(())
}

/// A new seller (its email, to sign in with [`PASSWORD`]).
async fn seller(accounts: &shopeezy_testkit::Accounts) -> (User, String) {
    let (user, email) = accounts.customer_with_email().await;
    accounts.grant_role(&user, "seller").await;
    (user, email)
}

/// One browser at a time: on two cores three Chromiums beside the services
/// would make every step slow for no gain in coverage.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn console_end_to_end(backend: Backend) {
    if ready().is_none() {
        return;
    }
    let _browser = ONE_BROWSER.lock().await;
    let Some(config) = StackConfig::new(backend).await else {
        return;
    };
    let stack = config.start().await;
    let accounts = &stack.accounts;
    let (_, seller_email) = seller(accounts).await;
    let (_, other_seller) = seller(accounts).await;
    let shots = repo_root()
        .join("target/console-screenshots")
        .join(format!("{backend:?}").to_lowercase());

    let run = tokio::process::Command::new("node")
        .arg(repo_root().join("testkit/e2e/console.mjs"))
        .current_dir(repo_root().join("testkit/e2e"))
        .env("HOST_URL", &stack.hosts[0].url)
        .env("ACCOUNT_URL", &accounts.account_url)
        .env("SELLER", &seller_email)
        .env("OTHER_SELLER", &other_seller)
        .env("ADMIN", ADMIN_EMAIL)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("PASSWORD", PASSWORD)
        .env("WASM", volume_pricing())
        .env("SHOTS", &shots)
        .env("CHROMIUM", chromium())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser test ends within 3 minutes")
        .expect("node starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let report: serde_json::Value = serde_json::from_str(
        stdout
            .lines()
            .last()
            .expect("the browser test prints its report"),
    )
    .expect("the report is JSON");
    assert_eq!(report["ok"], true, "{report}");
    let loads = report["loads"].as_array().expect("page loads are reported");
    assert_eq!(loads.len(), 4, "four page loads measured: {report}");
    for load in loads {
        let bytes = load["total"].as_u64().expect("a size");
        assert!(bytes > 0 && bytes < 100 * 1024, "{load}");
    }
}

shopeezy_testkit::every_backend!(console_end_to_end);
