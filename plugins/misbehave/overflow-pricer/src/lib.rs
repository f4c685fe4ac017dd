//! Test only (pricing): sets every line's unit price to `i64::MAX` (config
//! `{"price": N}` for another price). Each line alone fits in an `i64` at
//! quantity 1; two such lines do not add up, so the host must refuse the
//! answer as this plugin's failure rather than the shopper's.

use serde::Deserialize;
use shopeezy_plugin_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    price: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self { price: i64::MAX }
    }
}

struct OverflowPricer;

impl PricingPlugin for OverflowPricer {
    fn price(cart: Cart) -> Result<Vec<PriceChange>, String> {
        let config: Config = config(&cart)?;
        Ok((0..cart.lines.len())
            .map(|i| PriceChange::new(i, config.price))
            .collect())
    }
}

export_pricing!(OverflowPricer);
