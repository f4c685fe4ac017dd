//! What plugins may use: per call, per request (one cart view or checkout,
//! all its plugins together) and per merchant's dry runs. Limits scale with
//! the number of cart lines, so a big cart gets proportionally more room;
//! every per-call default is at least as generous as Shopify Functions' (11 M
//! instructions, 10 MB memory, 256 KB module per function).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use uuid::Uuid;
use wasmtime::ResourceLimiter;

/// The most lines of a dry run's sample cart. Fuel and time grow with the
/// lines, so without a cap a merchant's own sample buys as much CPU as it
/// likes; 1,000 is the largest cart the per-line limits were measured at
/// (`cargo xtask bench`), and the size a cart is meant to stay within.
pub const MAX_CART_LINES: usize = 1_000;

/// Per-call limits, from configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most lines (different products) of a cart, and of a dry run's sample.
    pub cart_lines: usize,
    /// Fuel (≈ wasm instructions) for a call on an empty cart.
    pub fuel_base: u64,
    /// Extra fuel per cart line.
    pub fuel_per_line: u64,
    /// Wall time for a call on an empty cart, in milliseconds.
    pub time_base_ms: u64,
    /// Extra wall time per 100 cart lines, in milliseconds.
    pub time_per_100_lines_ms: u64,
    /// Largest linear memory, in bytes.
    pub memory_bytes: usize,
    /// Largest wasm stack, in bytes (engine-wide).
    pub stack_bytes: usize,
    /// Largest component upload, in bytes.
    pub module_bytes: usize,
    /// Most entries (price changes, discounts, violations) in one answer.
    pub output_entries: usize,
    /// Longest text (label, message, code) in an answer, in bytes.
    pub output_text_bytes: usize,
    /// Most log bytes kept per call (what is beyond is dropped and counted).
    pub log_bytes: usize,
    /// Most log lines kept per call.
    pub log_lines: usize,
    /// Fuel of all the plugin calls of one request on an empty cart.
    pub request_fuel_base: u64,
    /// Extra request fuel per cart line.
    pub request_fuel_per_line: u64,
    /// Wall time of all the plugin calls of one request on an empty cart, in
    /// milliseconds.
    pub request_time_base_ms: u64,
    /// Extra request wall time per 100 cart lines, in milliseconds.
    pub request_time_per_100_lines_ms: u64,
    /// Most dry runs of one merchant running at once.
    pub dry_runs_per_merchant: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel_base: 20_000_000,
            fuel_per_line: 200_000,
            time_base_ms: 100,
            time_per_100_lines_ms: 50,
            memory_bytes: 64 << 20,
            stack_bytes: 1 << 20,
            module_bytes: 8 << 20,
            output_entries: 10_000,
            output_text_bytes: 256,
            log_bytes: 16 << 10,
            log_lines: 100,
            // Five calls' fuel and two and a half calls' time: room for a few
            // plugins, while ten copies of a costly one cost no more than five.
            request_fuel_base: 100_000_000,
            request_fuel_per_line: 1_000_000,
            request_time_base_ms: 250,
            request_time_per_100_lines_ms: 125,
            dry_runs_per_merchant: 2,
            cart_lines: MAX_CART_LINES,
        }
    }
}

impl Limits {
    /// The fuel of a call on a cart of `lines` lines.
    pub fn fuel(&self, lines: usize) -> u64 {
        self.fuel_base
            .saturating_add(self.fuel_per_line.saturating_mul(lines as u64))
    }

    /// The wall time of a call on a cart of `lines` lines, in milliseconds.
    pub fn time_ms(&self, lines: usize) -> u64 {
        self.time_base_ms
            .saturating_add(self.time_per_100_lines_ms.saturating_mul(lines as u64) / 100)
    }

    /// What a call on a cart of `lines` lines may use on its own.
    pub fn grant(&self, lines: usize) -> Grant {
        Grant {
            fuel: self.fuel(lines),
            time: Duration::from_millis(self.time_ms(lines)),
            fuel_from_budget: false,
            time_from_budget: false,
        }
    }

    /// The plugin budget of one request on a cart of `lines` lines.
    pub fn budget(&self, lines: usize) -> Budget {
        let fuel = self
            .request_fuel_base
            .saturating_add(self.request_fuel_per_line.saturating_mul(lines as u64));
        let time_ms = self.request_time_base_ms.saturating_add(
            self.request_time_per_100_lines_ms
                .saturating_mul(lines as u64)
                / 100,
        );
        Budget {
            fuel,
            time: Duration::from_millis(time_ms),
            fuel_left: fuel,
            time_left: Duration::from_millis(time_ms),
            calls: 0,
        }
    }
}

/// What one call may use: its own limits, or less when its request's budget
/// has less left (and then a limit reached is the budget's, not the call's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Fuel.
    pub fuel: u64,
    /// Wall time, host calls included.
    pub time: Duration,
    /// Whether the fuel is what was left of the request's budget.
    pub fuel_from_budget: bool,
    /// Whether the time is what was left of the request's budget.
    pub time_from_budget: bool,
}

/// The fuel and wall time left to one request's plugins, all of them
/// together: limits are per call, so without it every copy of a costly
/// plugin would add its full limits to the request.
#[derive(Debug, Clone)]
pub struct Budget {
    fuel: u64,
    time: Duration,
    fuel_left: u64,
    time_left: Duration,
    calls: usize,
}

impl Budget {
    /// What the next call may use: the least of its own `limits` and what is
    /// left; `None` when nothing is left.
    pub fn grant(&self, own: Grant) -> Option<Grant> {
        // Under a millisecond is below the epoch's granularity: no call fits.
        if self.fuel_left == 0 || self.time_left < Duration::from_millis(1) {
            return None;
        }
        Some(Grant {
            fuel: own.fuel.min(self.fuel_left),
            time: own.time.min(self.time_left),
            fuel_from_budget: self.fuel_left < own.fuel,
            time_from_budget: self.time_left < own.time,
        })
    }

    /// Counts what a call used against the budget.
    pub fn charge(&mut self, fuel: u64, elapsed: Duration) {
        self.fuel_left = self.fuel_left.saturating_sub(fuel);
        self.time_left = self.time_left.saturating_sub(elapsed);
        self.calls += 1;
    }

    /// Why a plugin does not run once the budget is spent.
    pub fn spent_reason(&self) -> String {
        format!(
            "request plugin budget spent: this request's {} earlier plugin calls used {} of {} fuel and {} of {} ms",
            self.calls,
            self.fuel - self.fuel_left,
            self.fuel,
            (self.time - self.time_left).as_millis(),
            self.time.as_millis(),
        )
    }
}

/// How many dry runs each merchant has running: a dry run burns CPU on the
/// merchant's own input, so each may run only a few at once. Only merchants
/// with runs in flight have an entry.
#[derive(Debug)]
pub struct DryRunSlots {
    per_merchant: usize,
    running: Arc<Mutex<HashMap<Uuid, usize>>>,
}

/// One dry run's slot, given back when dropped.
#[derive(Debug)]
pub struct DryRunSlot {
    merchant: Uuid,
    running: Arc<Mutex<HashMap<Uuid, usize>>>,
}

impl DryRunSlots {
    /// Slots for `per_merchant` dry runs of each merchant at once.
    pub fn new(per_merchant: usize) -> Self {
        Self {
            per_merchant,
            running: Arc::default(),
        }
    }

    /// A slot for `merchant`, or `None` when all of its slots are taken.
    pub fn take(&self, merchant: Uuid) -> Option<DryRunSlot> {
        // A poisoned lock only means a panic elsewhere mid-update of a
        // counter; the map itself is still a map.
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if running.get(&merchant).copied().unwrap_or(0) >= self.per_merchant {
            return None;
        }
        *running.entry(merchant).or_default() += 1;
        Some(DryRunSlot {
            merchant,
            running: self.running.clone(),
        })
    }

    /// The most dry runs of one merchant at once.
    pub fn per_merchant(&self) -> usize {
        self.per_merchant
    }
}

impl Drop for DryRunSlot {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = running.get_mut(&self.merchant) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                running.remove(&self.merchant);
            }
        }
    }
}

/// Caps a store's linear memories and tables, and remembers the peak and
/// whether the cap was hit (a guest usually traps when growth fails, so the
/// trap alone does not say why).
#[derive(Debug)]
pub struct MemoryLimiter {
    max_bytes: usize,
    /// The largest memory size reached.
    pub peak_bytes: usize,
    /// Whether a growth past `max_bytes` was refused.
    pub hit: bool,
}

impl MemoryLimiter {
    /// A limiter at `max_bytes`.
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes,
            peak_bytes: 0,
            hit: false,
        }
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.hit = true;
            return Ok(false);
        }
        self.peak_bytes = self.peak_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables hold function references; 100k is far beyond any real plugin.
        Ok(desired <= 100_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_grants_what_is_left_then_nothing() {
        let limits = Limits::default();
        let own = limits.grant(1);
        let mut budget = limits.budget(1);
        // Five full calls fit in the default budget, each with its own limits.
        for _ in 0..5 {
            let grant = budget.grant(own);
            assert_eq!(grant, Some(own));
            budget.charge(own.fuel, Duration::from_millis(1));
        }
        assert_eq!(budget.grant(own), None, "the fuel is spent");
        assert!(
            budget
                .spent_reason()
                .starts_with("request plugin budget spent")
        );

        let mut budget = limits.budget(1);
        // 251 ms for one line: 50 left.
        budget.charge(own.fuel * 4 + own.fuel / 2, Duration::from_millis(201));
        let grant = budget.grant(own);
        assert_eq!(
            grant,
            Some(Grant {
                fuel: own.fuel / 2,
                time: Duration::from_millis(50),
                fuel_from_budget: true,
                time_from_budget: true,
            }),
            "the least of its own limits and what is left"
        );
        budget.charge(1, Duration::from_millis(50));
        assert_eq!(budget.grant(own), None, "the time is spent");
    }

    #[test]
    fn dry_run_slots_are_per_merchant_and_given_back() {
        let slots = DryRunSlots::new(2);
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let first = slots.take(a);
        let second = slots.take(a);
        assert!(first.is_some() && second.is_some());
        assert!(slots.take(a).is_none(), "a third at once is refused");
        assert!(slots.take(b).is_some(), "another merchant is not affected");
        drop(first);
        assert!(
            slots.take(a).is_some(),
            "a finished run gives its slot back"
        );
        drop(second);
        let running = slots.running.lock().map(|r| r.len()).unwrap_or(usize::MAX);
        assert_eq!(running, 0, "no entry is kept for merchants without runs");
        assert!(DryRunSlots::new(0).take(a).is_none());
    }
}
