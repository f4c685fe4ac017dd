//! Test only (pricing): recurses without bound; the host's wasm stack limit must stop it (with config `{"big_frames": true}`, 1 KiB frames on the shadow stack in linear memory overflow first instead: an out-of-bounds trap).

use std::hint::black_box;

use shopeezy_plugin_sdk::prelude::*;

/// Never reaches its base case: `depth` only grows, and the work after the
/// call keeps the compiler from turning the recursion into a loop.
fn descend(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return depth;
    }
    descend(depth + 1).wrapping_mul(3).wrapping_add(depth)
}

/// The same with 1 KiB of locals per call in linear memory.
fn descend_with_big_frames(depth: u64) -> u64 {
    let frame = black_box([depth; 128]);
    if black_box(depth) == u64::MAX {
        return frame[0];
    }
    descend_with_big_frames(depth + 1).wrapping_add(frame[127])
}

struct DeepRecursion;

impl PricingPlugin for DeepRecursion {
    fn price(cart: Cart) -> Result<Vec<PriceChange>, String> {
        let config: String = cart.config.split_whitespace().collect();
        let depth = if config.contains("\"big_frames\":true") {
            descend_with_big_frames(0)
        } else {
            descend(0)
        };
        Err(format!("reached the bottom at {depth}"))
    }
}

export_pricing!(DeepRecursion);
