//! Test only (pricing): logs in a tight loop (config `{"lines": N}`, default 10,000, then returns normally); the host's log cap must bound it.

use shopeezy_plugin_sdk::prelude::*;

struct ChattyLogger;

impl PricingPlugin for ChattyLogger {
    fn price(cart: Cart) -> Result<Vec<PriceChange>, String> {
        let lines = serde_json_lines(&cart.config).unwrap_or(10_000);
        for i in 0..lines {
            log::info(&format!(
                "chatty line {i}: the quick brown fox jumps over the lazy dog"
            ));
        }
        Ok(Vec::new())
    }
}

/// `N` from a config `{"lines": N}`, read without a config struct to keep the crate tiny.
fn serde_json_lines(config: &str) -> Option<u64> {
    let rest = config
        .split_once("\"lines\"")?
        .1
        .trim_start()
        .strip_prefix(':')?;
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

export_pricing!(ChattyLogger);
