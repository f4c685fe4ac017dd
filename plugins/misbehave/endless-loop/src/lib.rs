//! Test only (pricing): never returns; the host's fuel or wall-time limit must stop it.

use shopeezy_plugin_sdk::prelude::*;

struct EndlessLoop;

impl PricingPlugin for EndlessLoop {
    fn price(_cart: Cart) -> Result<Vec<PriceChange>, String> {
        let mut spins = 0u64;
        loop {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
    }
}

export_pricing!(EndlessLoop);
