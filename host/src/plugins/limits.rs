//! What one plugin call may use. Limits scale with the number of cart lines,
//! so a big cart gets proportionally more room; every default is at least as
//! generous as Shopify Functions' (11 M instructions, 10 MB memory, 256 KB
//! module per function).

use wasmtime::ResourceLimiter;

/// Per-call limits, from configuration.
#[derive(Debug, Clone)]
pub struct Limits {
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
