//! Test only (pricing): returns an invalid output, by default a line index out of range, with config `{"negative": true}` a negative price on line 0.

use serde::Deserialize;
use shopeezy_plugin_sdk::prelude::*;

#[derive(Deserialize, Default)]
#[serde(default)]
struct Config {
    negative: bool,
}

struct InvalidOutput;

impl PricingPlugin for InvalidOutput {
    fn price(cart: Cart) -> Result<Vec<PriceChange>, String> {
        let config: Config = config(&cart)?;
        Ok(vec![if config.negative {
            PriceChange {
                line: 0,
                unit_price: -1,
            }
        } else {
            PriceChange {
                line: cart.lines.len() as u32,
                unit_price: 100,
            }
        }])
    }
}

export_pricing!(InvalidOutput);
