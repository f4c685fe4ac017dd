//! The wasmtime runtime that runs plugins: one engine (pooling allocator,
//! copy-on-write memory images, fuel, epoch interruption), components
//! compiled and pre-instantiated once per version, and a fresh store and
//! instance for every call, so nothing carries over from one shopper to the
//! next.
//!
//! A call's wall-time limit covers the time it spends in host functions too.
//! The epoch deadline only interrupts wasm code, so nothing the host gives a
//! guest may wait: the monotonic clock is fixed and its timers are due at
//! once, stdin is closed, stdout and stderr are sinks, sockets are refused,
//! and `wasi:io/poll` gives up at the call's deadline if anything ever does
//! wait. A call that still ends past its time is a time failure.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wasmtime::component::{Component, HasSelf, Linker, Resource, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap};
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::sync::io::poll as sync_poll;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use shopeezy_common::extract::excerpt;

use super::limits::{DryRunSlots, Grant, Limits, MemoryLimiter};

/// The generated bindings of `wit/plugin.wit`: one world per hook, sharing
/// one set of types.
pub mod bindings {
    wasmtime::component::bindgen!({ world: "pricing", path: "../wit" });

    /// The `promotion` world.
    pub mod promotion {
        wasmtime::component::bindgen!({
            world: "promotion",
            path: "../wit",
            with: {
                "shopeezy:plugin/types": super::shopeezy::plugin::types,
                "shopeezy:plugin/log": super::shopeezy::plugin::log,
            },
        });
    }

    /// The `validation` world.
    pub mod validation {
        wasmtime::component::bindgen!({
            world: "validation",
            path: "../wit",
            with: {
                "shopeezy:plugin/types": super::shopeezy::plugin::types,
                "shopeezy:plugin/log": super::shopeezy::plugin::log,
            },
        });
    }
}

pub use bindings::shopeezy::plugin::log::Level;
pub use bindings::shopeezy::plugin::types::{
    Amount, Cart, Customer, Discount, Line, PriceChange, Target, UsageLimit, Violation,
};

pub use crate::domain::Hook;

/// What a call's store holds: a WASI context that grants nothing, the
/// memory limiter, the call's deadline and its logs.
pub struct PluginCtx {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    /// The request's time, in nanoseconds: what the monotonic clock reads.
    now_ns: u64,
    /// When the call's wall time is up: no host function waits past it.
    deadline: Instant,
    logs: Vec<LogLine>,
    log_bytes: usize,
    logs_dropped: usize,
    max_log_bytes: usize,
    max_log_lines: usize,
}

impl WasiView for PluginCtx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::shopeezy::plugin::log::Host for PluginCtx {
    fn log(&mut self, level: Level, message: String) {
        if self.logs.len() >= self.max_log_lines
            || self.log_bytes + message.len() > self.max_log_bytes
        {
            self.logs_dropped += 1;
            return;
        }
        self.log_bytes += message.len();
        self.logs.push(LogLine {
            level: level_name(level),
            message,
        });
    }
}

/// The monotonic clock of a plugin: it reads the request's time, so a timer
/// on it is due at once. A sleep returns immediately instead of holding a
/// thread the epoch deadline cannot interrupt; a guest that waits for the
/// clock to move never sees it move and is stopped by its limits.
impl monotonic_clock::Host for PluginCtx {
    fn now(&mut self) -> wasmtime::Result<monotonic_clock::Instant> {
        Ok(self.now_ns)
    }

    fn resolution(&mut self) -> wasmtime::Result<monotonic_clock::Duration> {
        Ok(1_000_000)
    }

    fn subscribe_instant(
        &mut self,
        _when: monotonic_clock::Instant,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        due(&mut self.table)
    }

    fn subscribe_duration(
        &mut self,
        _duration: monotonic_clock::Duration,
    ) -> wasmtime::Result<Resource<DynPollable>> {
        due(&mut self.table)
    }
}

/// A timer that is already due.
struct Due;

#[wasmtime_wasi::async_trait]
impl Pollable for Due {
    async fn ready(&mut self) {}
}

fn due(table: &mut ResourceTable) -> wasmtime::Result<Resource<DynPollable>> {
    let timer = table.push(Due)?;
    subscribe(table, timer)
}

/// `wasi:io/poll` with the call's deadline: every pollable a plugin can get is
/// ready at once, but should one ever wait, the call ends at its deadline
/// rather than holding the thread.
impl sync_poll::Host for PluginCtx {
    fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        let deadline = self.deadline;
        wait_until(deadline, async_poll::Host::poll(&mut self.table, pollables))?
    }
}

impl sync_poll::HostPollable for PluginCtx {
    fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        sync_poll::HostPollable::ready(&mut self.table, pollable)
    }

    fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        let deadline = self.deadline;
        wait_until(
            deadline,
            async_poll::HostPollable::block(&mut self.table, pollable),
        )?
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        sync_poll::HostPollable::drop(&mut self.table, pollable)
    }
}

/// A host function waited until the call's deadline.
#[derive(Debug)]
struct WaitedPastDeadline;

impl std::fmt::Display for WaitedPastDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the plugin waited in a host call until its time was up")
    }
}

impl std::error::Error for WaitedPastDeadline {}

/// Runs `wait` to its end or until `deadline`, whichever is first.
fn wait_until<T>(
    deadline: Instant,
    wait: impl std::future::Future<Output = T>,
) -> wasmtime::Result<T> {
    wasmtime_wasi::runtime::in_tokio(async {
        tokio::time::timeout_at(deadline.into(), wait)
            .await
            .map_err(|_| wasmtime::Error::new(WaitedPastDeadline))
    })
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

/// One line a plugin logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogLine {
    /// `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// The message.
    pub message: String,
}

/// A compiled, pre-instantiated plugin version of one hook.
#[derive(Clone)]
pub enum Compiled {
    /// A `pricing` component.
    Pricing(bindings::PricingPre<PluginCtx>),
    /// A `promotion` component.
    Promotion(bindings::promotion::PromotionPre<PluginCtx>),
    /// A `validation` component.
    Validation(bindings::validation::ValidationPre<PluginCtx>),
    /// An installed version that cannot be compiled now (it breaks a compile
    /// limit set after it was installed, or its compile did not finish in
    /// time): every call fails with the reason, under the plugin's policy,
    /// rather than the plugin silently not running.
    Refused(Arc<str>),
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Pricing(_) => "Compiled(pricing)",
            Self::Promotion(_) => "Compiled(promotion)",
            Self::Validation(_) => "Compiled(validation)",
            Self::Refused(_) => "Compiled(refused)",
        })
    }
}

/// A plugin's answer.
#[derive(Debug, Clone)]
pub enum Output {
    /// New unit prices.
    Pricing(Vec<PriceChange>),
    /// Discounts.
    Promotion(Vec<Discount>),
    /// Violations.
    Validation(Vec<Violation>),
}

/// Why a call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The fuel (instruction) limit ran out.
    Fuel,
    /// The wall-time limit passed.
    Time,
    /// The memory limit was reached.
    Memory,
    /// The stack overflowed.
    Stack,
    /// The guest trapped (a panic, an invalid access, …).
    Trap,
    /// The guest returned an error.
    Error,
    /// The answer broke the contract (index out of range, negative price,
    /// amounts too large to add up, …).
    InvalidOutput,
    /// No instance could be made.
    Instantiate,
    /// The request's plugin budget (fuel and time of all its plugins
    /// together) was spent before or during the call.
    Budget,
}

/// A failed call: which kind, and a reason a merchant can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Failure {
    /// The kind of failure.
    pub kind: FailureKind,
    /// What happened, naming the limit and how much when one was hit.
    pub reason: String,
}

impl Failure {
    /// A failure of `kind`.
    pub fn new(kind: FailureKind, reason: impl Into<String>) -> Self {
        Self {
            kind,
            reason: reason.into(),
        }
    }
}

/// Everything about one call.
#[derive(Debug, Clone)]
pub struct CallReport {
    /// The answer, or why there is none.
    pub result: Result<Output, Failure>,
    /// Fuel used.
    pub fuel_used: u64,
    /// Wall time of instantiation and call.
    pub elapsed: Duration,
    /// The largest linear memory reached, in bytes.
    pub peak_memory_bytes: usize,
    /// What the plugin logged (bounded).
    pub logs: Vec<LogLine>,
    /// Log lines dropped past the bounds.
    pub logs_dropped: usize,
}

/// How often the epoch ticks: the granularity of wall-time limits.
const EPOCH_TICK: Duration = Duration::from_millis(1);

/// The process-wide engine. One per process: its pooling allocator reserves
/// address space up front, and the epoch ticker serves every store.
fn engine(stack_bytes: usize) -> anyhow::Result<Engine> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    let engine = ENGINE.get_or_init(|| build_engine(stack_bytes).map_err(|e| format!("{e:#}")));
    engine
        .clone()
        .map_err(|e| anyhow::anyhow!("the wasm engine could not start: {e}"))
}

fn build_engine(stack_bytes: usize) -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(512)
        .total_core_instances(1024)
        .total_memories(512)
        .total_tables(1024)
        .total_stacks(512)
        .max_memory_size(256 << 20)
        // Keep the pages of freed instances mapped: a fresh instance per call
        // then costs a reset, not page faults.
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        // Where the kernel has PAGEMAP_SCAN (Linux 6.7+), reset only the
        // pages an instance touched instead of the whole resident prefix
        // (measured: see README, Benchmarks).
        .pagemap_scan(wasmtime::Enabled::Auto);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(stack_bytes)
        .memory_init_cow(true)
        // Bounded reservations keep the pool's address space modest.
        .memory_reservation(256 << 20)
        .memory_guard_size(64 << 10)
        // One core per compile: a large component would otherwise take every
        // core from shoppers while it compiles (4,048 functions cut them to
        // 0.36×). How many compiles run at once is `plugins::compile`'s.
        .parallel_compilation(false)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let engine = Engine::new(&config).map_err(|e| anyhow::anyhow!("{e:#}"))?;
    let ticker = engine.weak();
    std::thread::Builder::new()
        .name("wasm-epoch".into())
        .spawn(move || {
            while let Some(engine) = ticker.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })?;
    Ok(engine)
}

/// Compiles and runs plugins.
#[derive(Clone)]
pub struct Runtime {
    engine: Engine,
    linker: std::sync::Arc<Linker<PluginCtx>>,
    /// The limits of every call.
    pub limits: Limits,
    /// The dry runs running now, per merchant.
    pub dry_runs: Arc<DryRunSlots>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime with `limits`.
    pub fn new(limits: Limits) -> anyhow::Result<Self> {
        let engine = engine(limits.stack_bytes)?;
        let mut linker = Linker::<PluginCtx>::new(&engine);
        // WASI with no capabilities: guests built for wasm32-wasip2 import
        // it, and every call is answered from an empty, fixed context.
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow::anyhow!("{e:#}"))?;
        // The clock's timers and `wasi:io/poll` replace WASI's own, which
        // sleep on real timers the epoch deadline cannot interrupt.
        linker.allow_shadowing(true);
        monotonic_clock::add_to_linker::<PluginCtx, HasSelf<PluginCtx>>(&mut linker, |ctx| ctx)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        sync_poll::add_to_linker::<PluginCtx, HasSelf<PluginCtx>>(&mut linker, |ctx| ctx)
            .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        linker.allow_shadowing(false);
        bindings::shopeezy::plugin::log::add_to_linker::<PluginCtx, HasSelf<PluginCtx>>(
            &mut linker,
            |ctx| ctx,
        )
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
        Ok(Self {
            engine,
            linker: std::sync::Arc::new(linker),
            dry_runs: Arc::new(DryRunSlots::new(limits.dry_runs_per_merchant)),
            limits,
        })
    }

    /// Compiles `bytes` as a component of `hook`'s world and
    /// pre-instantiates it; the reason when it is not one or breaks a limit.
    pub fn compile(&self, hook: Hook, bytes: &[u8]) -> Result<Compiled, String> {
        if bytes.len() > self.limits.module_bytes {
            return Err(format!(
                "the component is {} bytes; the limit is {}",
                bytes.len(),
                self.limits.module_bytes
            ));
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(|e| format!("not a valid component: {e:#}"))?;
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            format!("the component needs imports the host does not give (only `shopeezy:plugin/log` and capability-free WASI): {e:#}")
        })?;
        let wrong_world =
            |e: wasmtime::Error| format!("not a component of the `{}` world: {e:#}", hook.as_str());
        Ok(match hook {
            Hook::Pricing => {
                Compiled::Pricing(bindings::PricingPre::new(pre).map_err(wrong_world)?)
            }
            Hook::Promotion => Compiled::Promotion(
                bindings::promotion::PromotionPre::new(pre).map_err(wrong_world)?,
            ),
            Hook::Validation => Compiled::Validation(
                bindings::validation::ValidationPre::new(pre).map_err(wrong_world)?,
            ),
        })
    }

    /// Calls a plugin once on `cart`, in a fresh store and instance, with
    /// the call's own limits.
    pub fn call(&self, compiled: &Compiled, cart: &Cart) -> CallReport {
        self.call_with(compiled, cart, self.limits.grant(cart.lines.len()))
    }

    /// Calls a plugin once on `cart`, in a fresh store and instance, with
    /// the fuel and wall time of `grant`.
    pub fn call_with(&self, compiled: &Compiled, cart: &Cart, grant: Grant) -> CallReport {
        if let Compiled::Refused(reason) = compiled {
            return CallReport {
                result: Err(Failure::new(
                    FailureKind::Instantiate,
                    format!("the component cannot be run: {reason}"),
                )),
                fuel_used: 0,
                elapsed: Duration::ZERO,
                peak_memory_bytes: 0,
                logs: Vec::new(),
                logs_dropped: 0,
            };
        }
        let lines = cart.lines.len();
        let fuel = grant.fuel;
        let started = Instant::now();
        let deadline = started + grant.time;
        let mut store = Store::new(&self.engine, self.context(cart.now_ms, deadline));
        store.limiter(|ctx| &mut ctx.limiter);
        let result = match store.set_fuel(fuel) {
            Ok(()) => {
                let ticks = grant.time.as_micros().div_ceil(EPOCH_TICK.as_micros());
                store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX).max(1));
                invoke(&mut store, compiled, cart)
            }
            Err(e) => Err(e),
        };
        let elapsed = started.elapsed();
        let remaining = store.get_fuel().unwrap_or(0);
        let ctx = store.data_mut();
        let result = result.map_err(|e| {
            classify(
                &e,
                remaining,
                ctx.limiter.hit,
                &grant,
                self.limits.memory_bytes,
            )
        });
        let result = match result {
            // A call that ended past its time spent it in host functions,
            // where the epoch does not reach: still a time failure.
            _ if elapsed > grant.time => Err(out_of_time(&grant)),
            Ok(Ok(output)) => check_output(output, lines, &self.limits),
            Ok(Err(message)) => Err(Failure::new(
                FailureKind::Error,
                format!("the plugin returned an error: {}", excerpt(&message, 512)),
            )),
            Err(failure) => Err(failure),
        };
        let ctx = store.into_data();
        CallReport {
            result,
            fuel_used: fuel.saturating_sub(remaining),
            elapsed,
            peak_memory_bytes: ctx.limiter.peak_bytes,
            logs: ctx.logs,
            logs_dropped: ctx.logs_dropped,
        }
    }

    fn context(&self, now_ms: i64, deadline: Instant) -> PluginCtx {
        let wasi = WasiCtx::builder()
            .wall_clock(FixedClock(now_ms))
            .monotonic_clock(FixedClock(now_ms))
            .secure_random(ZeroRng)
            .insecure_random(ZeroRng)
            .insecure_random_seed(0)
            // No sockets at all, not even unconnected ones: nothing to wait on.
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        PluginCtx {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(self.limits.memory_bytes),
            now_ns: FixedClock(now_ms).nanos(),
            deadline,
            logs: Vec::new(),
            log_bytes: 0,
            logs_dropped: 0,
            max_log_bytes: self.limits.log_bytes,
            max_log_lines: self.limits.log_lines,
        }
    }
}

type GuestResult = Result<Output, String>;

fn invoke(
    store: &mut Store<PluginCtx>,
    compiled: &Compiled,
    cart: &Cart,
) -> wasmtime::Result<GuestResult> {
    Ok(match compiled {
        Compiled::Pricing(pre) => pre
            .instantiate(&mut *store)?
            .call_price(&mut *store, cart)?
            .map(Output::Pricing),
        Compiled::Promotion(pre) => pre
            .instantiate(&mut *store)?
            .call_discounts(&mut *store, cart)?
            .map(Output::Promotion),
        Compiled::Validation(pre) => pre
            .instantiate(&mut *store)?
            .call_validate(&mut *store, cart)?
            .map(Output::Validation),
        Compiled::Refused(reason) => {
            return Err(wasmtime::Error::msg(format!("not compiled: {reason}")));
        }
    })
}

/// Names what stopped a call. Any error is a failure; the trap code and the
/// store's state say which limit, if any, was the cause.
fn classify(
    e: &wasmtime::Error,
    fuel_left: u64,
    memory_hit: bool,
    grant: &Grant,
    memory: usize,
) -> Failure {
    if e.is::<WaitedPastDeadline>() {
        return out_of_time(grant);
    }
    match e.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => out_of_fuel(grant),
        _ if fuel_left == 0 => out_of_fuel(grant),
        Some(Trap::Interrupt) => out_of_time(grant),
        Some(Trap::StackOverflow) => Failure::new(
            FailureKind::Stack,
            "stack overflow (the stack limit was reached)",
        ),
        _ if memory_hit => Failure::new(
            FailureKind::Memory,
            format!("memory limit reached: {memory} bytes"),
        ),
        Some(trap) => Failure::new(FailureKind::Trap, format!("the plugin trapped: {trap}")),
        None if e.to_string().contains("instantiate") || e.to_string().contains("pooling") => {
            Failure::new(
                FailureKind::Instantiate,
                format!("no instance could be made: {e:#}"),
            )
        }
        None => Failure::new(
            FailureKind::Trap,
            format!("the plugin failed: {}", excerpt(&format!("{e:#}"), 512)),
        ),
    }
}

/// The failure of a call that used all its fuel: its own limit, or what was
/// left of its request's budget.
fn out_of_fuel(grant: &Grant) -> Failure {
    if grant.fuel_from_budget {
        Failure::new(
            FailureKind::Budget,
            format!(
                "request plugin budget spent: the call used the {} fuel units left of it",
                grant.fuel
            ),
        )
    } else {
        Failure::new(
            FailureKind::Fuel,
            format!("fuel limit reached: {} units", grant.fuel),
        )
    }
}

/// The failure of a call that ran out of wall time, its own or what was
/// left of its request's budget.
fn out_of_time(grant: &Grant) -> Failure {
    let ms = grant.time.as_millis();
    if grant.time_from_budget {
        Failure::new(
            FailureKind::Budget,
            format!("request plugin budget spent: the call used the {ms} ms left of it"),
        )
    } else {
        Failure::new(FailureKind::Time, format!("time limit reached: {ms} ms"))
    }
}

/// The structural checks of an answer: sizes, indexes in range, no negative
/// price, percentages at most 100 %. Amounts against what they apply to are
/// checked by the pipeline.
fn check_output(output: Output, lines: usize, limits: &Limits) -> Result<Output, Failure> {
    let invalid = |reason: String| Err(Failure::new(FailureKind::InvalidOutput, reason));
    let count = match &output {
        Output::Pricing(v) => v.len(),
        Output::Promotion(v) => v.len(),
        Output::Validation(v) => v.len(),
    };
    if count > limits.output_entries {
        return invalid(format!(
            "the answer has {count} entries; the limit is {}",
            limits.output_entries
        ));
    }
    let line_ok = |i: u32| (i as usize) < lines;
    let text_ok = |s: &str| s.len() <= limits.output_text_bytes;
    match &output {
        Output::Pricing(changes) => {
            for c in changes {
                if !line_ok(c.line) {
                    return invalid(format!("price change for line {} of {lines}", c.line));
                }
                if c.unit_price < 0 {
                    return invalid(format!(
                        "negative unit price {} for line {}",
                        c.unit_price, c.line
                    ));
                }
            }
        }
        Output::Promotion(discounts) => {
            for d in discounts {
                if let Target::Line(i) = d.target
                    && !line_ok(i)
                {
                    return invalid(format!("discount for line {i} of {lines}"));
                }
                match d.amount {
                    Amount::Fixed(m) if m < 0 => return invalid(format!("negative discount {m}")),
                    Amount::Percent(bp) if bp > 10_000 => {
                        return invalid(format!("discount of {bp} basis points (over 100 %)"));
                    }
                    _ => {}
                }
                let texts = [
                    Some(d.label.as_str()),
                    d.code.as_deref(),
                    d.limit.as_ref().map(|l| l.key.as_str()),
                ];
                if d.label.is_empty() || !texts.into_iter().flatten().all(text_ok) {
                    return invalid(format!(
                        "a label, code or limit key is empty or longer than {} bytes",
                        limits.output_text_bytes
                    ));
                }
            }
        }
        Output::Validation(violations) => {
            for v in violations {
                if v.line.is_some_and(|i| !line_ok(i)) {
                    return invalid("violation for a line out of range".to_owned());
                }
                if v.code.is_empty()
                    || !text_ok(&v.code)
                    || v.message.len() > limits.output_text_bytes * 4
                {
                    return invalid(
                        "a violation's code or message is empty or too long".to_owned(),
                    );
                }
            }
        }
    }
    Ok(output)
}

/// A clock that always reads the request's time: plugins are deterministic.
struct FixedClock(i64);

impl FixedClock {
    /// The time in nanoseconds since the epoch (0 before it).
    fn nanos(&self) -> u64 {
        u64::try_from(self.0).unwrap_or(0).saturating_mul(1_000_000)
    }
}

impl wasmtime_wasi::HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_millis(1)
    }
    fn now(&self) -> Duration {
        Duration::from_millis(self.0.max(0) as u64)
    }
}

impl wasmtime_wasi::HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }
    fn now(&self) -> u64 {
        self.nanos()
    }
}

/// "Randomness" that is all zeros: the same input always gives the same output.
struct ZeroRng;

impl wasi_rand_core::TryRng for ZeroRng {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(0)
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(0)
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        dst.fill(0);
        Ok(())
    }
}

// Deliberately predictable: plugins get no randomness, only determinism.
impl wasi_rand_core::TryCryptoRng for ZeroRng {}
