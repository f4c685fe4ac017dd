//! Test only (pricing): waits inside WASI calls, which the host must not let
//! block. Config `{"mode": M, "seconds": S}` (default `"until"`, 20 s):
//! `"until"` sleeps with `std::thread::sleep` until the monotonic clock says
//! `S` seconds have passed, as a guest that really wants to wait would (the
//! host's clock is fixed, so that never happens and a limit must stop it);
//! `"once"` sleeps `S` seconds once, then halves every price; `"stdin"` reads
//! stdin to its end, then halves every price.

use std::io::Read;
use std::time::{Duration, Instant};

use serde::Deserialize;
use shopeezy_plugin_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    mode: String,
    seconds: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            mode: "until".into(),
            seconds: 20,
        }
    }
}

struct Sleeper;

impl PricingPlugin for Sleeper {
    fn price(cart: Cart) -> Result<Vec<PriceChange>, String> {
        let config: Config = config(&cart)?;
        let wait = Duration::from_secs(config.seconds);
        match config.mode.as_str() {
            "until" => {
                let started = Instant::now();
                while started.elapsed() < wait {
                    std::thread::sleep(wait.saturating_sub(started.elapsed()));
                }
                return Ok(Vec::new());
            }
            "once" => std::thread::sleep(wait),
            "stdin" => {
                let mut input = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut input)
                    .map_err(|e| e.to_string())?;
            }
            other => return Err(format!("unknown mode {other}")),
        }
        Ok(cart
            .lines
            .iter()
            .enumerate()
            .map(|(i, line)| PriceChange::new(i, line.unit_price / 2))
            .collect())
    }
}

export_pricing!(Sleeper);
