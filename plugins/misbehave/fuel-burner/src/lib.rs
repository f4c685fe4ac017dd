//! Test only (pricing): burns fuel in a loop of `{"spins": N}` rounds
//! (default 1,000,000), then returns no changes: a plugin that stays within
//! its own limits but costs a lot, so that copies of it add up.

use serde::Deserialize;
use shopeezy_plugin_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    spins: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self { spins: 1_000_000 }
    }
}

struct FuelBurner;

impl PricingPlugin for FuelBurner {
    fn price(cart: Cart) -> Result<Vec<PriceChange>, String> {
        let config: Config = config(&cart)?;
        let mut acc = 0u64;
        for i in 0..config.spins {
            acc = std::hint::black_box(acc.wrapping_mul(31).wrapping_add(i));
        }
        std::hint::black_box(acc);
        Ok(Vec::new())
    }
}

export_pricing!(FuelBurner);
