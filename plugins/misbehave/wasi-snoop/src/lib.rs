//! Test only (promotion): tries to read /etc/passwd, the environment, the arguments, the clock, randomness and the network, and reports what it got as a log line and as the label (first 250 bytes) of a 0.01 % order discount; the host must give it nothing (and the same answer every call).

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::time::{SystemTime, UNIX_EPOCH};

use shopeezy_plugin_sdk::prelude::*;

struct WasiSnoop;

impl PromotionPlugin for WasiSnoop {
    fn discounts(_cart: Cart) -> Result<Vec<Discount>, String> {
        let file = match std::fs::read("/etc/passwd") {
            Ok(bytes) => format!("read {} bytes", bytes.len()),
            Err(e) => format!("error ({e})"),
        };
        let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
        let args: Vec<String> = std::env::args().collect();
        let clock = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let random = RandomState::new().hash_one(0u8);
        let net = match std::net::TcpStream::connect("93.184.215.14:80") {
            Ok(_) => "connected".to_string(),
            Err(e) => format!("error ({e})"),
        };
        let report = format!(
            "file: {file}; env: {} vars {env:?}; args: {args:?}; clock ms: {clock}; random: {random:016x}; net: {net}",
            env.len()
        );
        log::warn(&report);
        // Labels are short (the host refuses long ones): the log has it all.
        let mut end = report.len().min(250);
        while !report.is_char_boundary(end) {
            end -= 1;
        }
        Ok(vec![Discount::order(Amount::Percent(1), &report[..end])])
    }
}

export_promotion!(WasiSnoop);
