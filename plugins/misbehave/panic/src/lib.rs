//! Test only (pricing): panics, which with `panic = "abort"` is an `unreachable` trap in the host.

use shopeezy_plugin_sdk::prelude::*;

struct Panic;

impl PricingPlugin for Panic {
    fn price(cart: Cart) -> Result<Vec<PriceChange>, String> {
        panic!("this plugin panics on purpose ({} lines)", cart.lines.len());
    }
}

export_pricing!(Panic);
