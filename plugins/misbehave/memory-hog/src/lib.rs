//! Test only (pricing): grows its memory 1 MiB at a time without bound; the host's memory limit must stop it.

use shopeezy_plugin_sdk::prelude::*;

struct MemoryHog;

impl PricingPlugin for MemoryHog {
    fn price(_cart: Cart) -> Result<Vec<PriceChange>, String> {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // Touch every page so the memory is really used, not just reserved.
            hoard.push(vec![0xA5; 1 << 20]);
            std::hint::black_box(&hoard);
        }
    }
}

export_pricing!(MemoryHog);
