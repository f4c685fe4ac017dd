//! Test only (pricing): returns a huge output: by default 500,000 price changes (8 MB, within the default fuel and memory limits, far over any output limit; config `{"changes": N}`), or with `{"error_bytes": N}` an error message of N bytes.

use serde::Deserialize;
use shopeezy_plugin_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    changes: u32,
    error_bytes: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            changes: 500_000,
            error_bytes: None,
        }
    }
}

struct HugeOutput;

impl PricingPlugin for HugeOutput {
    fn price(cart: Cart) -> Result<Vec<PriceChange>, String> {
        let config: Config = config(&cart)?;
        if let Some(bytes) = config.error_bytes {
            return Err("x".repeat(bytes));
        }
        // Valid items (line 0, its own price) when the cart has a line, so only the size is wrong.
        let unit_price = cart.lines.first().map_or(0, |l| l.unit_price);
        Ok(vec![
            PriceChange {
                line: 0,
                unit_price
            };
            config.changes as usize
        ])
    }
}

export_pricing!(HugeOutput);
