//! What compiling a plugin may cost the host, and the gate every compile
//! goes through.
//!
//! wasmtime cannot stop a compile once it started, and Cranelift's time and
//! memory grow faster than linearly with the size of one function (a 7.65 MB
//! straight-line function took 357 s and 660 MiB; a branchy one passed
//! 7.8 GiB). So the bound is set before compiling: a component whose code is
//! larger or more complex than [`CompileLimits`] allows is refused after a
//! parse that costs milliseconds. What passes is compiled off the async
//! runtime, one compile per spare core at most, under a wall-time deadline
//! that is only a backstop (a compile past it is reported as refused, its
//! result discarded, but it keeps its core until it ends).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmparser::{Encoding, Operator, Parser, Payload};

use super::runtime::{Compiled, Hook, Runtime};

/// How large and complex a component's code may be, checked before it is
/// compiled.
///
/// Measured by `plugins_compile::compile_figures` (2-core machine, this
/// engine). The example plugins (release builds of `plugins/`, 45–162 KB)
/// have at most: 453 functions, 54,701 operators, 3,839 branches and
/// 127,414,891 squared operators in a component; a largest function of
/// 20,421 bytes, 9,023 operators, 111 locals, 539 branches and nesting 82;
/// 3 core modules and 94 canonical functions. They compile in 0.1–0.4 s
/// (up to 0.9 s with the machine busy). The limits are 3–10× those figures
/// (2.5× for the largest single function, which the squared budget caps at
/// 22,360 operators): code built to be slow costs about twenty times more
/// per operator than compiled Rust, so wider margins would allow tens of
/// seconds. The worst shapes the limits admit (one function of 22,360
/// operators; seven of 4,095 branches each; 31 functions with 1,000 locals
/// live across 500 branches; 1,310 functions of 50 live values) compiled in
/// 0.5–2.2 s each, with at most about 100 MiB more memory.
#[derive(Debug, Clone)]
pub struct CompileLimits {
    /// Most bytes in one function body: Cranelift's cost grows faster than
    /// linearly with it.
    pub function_bytes: usize,
    /// Most operators in one function body.
    pub function_operators: usize,
    /// Most locals declared by one function (each is a variable to allocate).
    pub function_locals: u64,
    /// Most branches (`if`, `br`, `br_if`, `br_table` targets, …) in one
    /// function: blocks and edges are what makes register allocation's
    /// memory explode.
    pub function_branches: usize,
    /// Deepest nesting of blocks in one function.
    pub nesting: usize,
    /// Most functions defined in all the component's core modules.
    pub functions: usize,
    /// Most operators in all the component's core modules: the compile's
    /// total work, for code of ordinary shape.
    pub operators: u64,
    /// Most branches in all the component's core modules: each costs
    /// several times an ordinary operator to compile.
    pub branches: u64,
    /// Most of the sum, over all functions, of the square of each one's
    /// operator count. Cranelift's work on one function grows about with
    /// the square of its size in the worst shapes (many values live at
    /// once, many branches to one place), so one large function costs more
    /// than many small ones.
    pub operators_squared: u64,
    /// Most bytes of code (function bodies) in all the component's core
    /// modules: the compile's total work.
    pub code_bytes: usize,
    /// Most core modules and nested components.
    pub modules: usize,
    /// Most canonical functions (`canon lift`, `canon lower`, resource
    /// intrinsics): each is a trampoline to compile.
    pub canonical_functions: usize,
    /// The compile's wall time, a backstop behind the checks above (about
    /// five times the worst case measured).
    pub deadline: Duration,
}

impl Default for CompileLimits {
    fn default() -> Self {
        Self {
            function_bytes: 64 << 10,
            function_operators: 32 << 10,
            function_locals: 1_000,
            function_branches: 4_096,
            nesting: 512,
            functions: 5_000,
            operators: 256 << 10,
            branches: 32 << 10,
            operators_squared: 500_000_000,
            code_bytes: 1 << 20,
            modules: 16,
            canonical_functions: 1_000,
            deadline: Duration::from_secs(10),
        }
    }
}

/// What a component's code measures, as far as it was read (a check stops
/// at the first limit broken).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// Functions defined, all core modules together.
    pub functions: usize,
    /// Operators, all functions together.
    pub operators: u64,
    /// Branches, all functions together.
    pub branches: u64,
    /// The sum of each function's operator count squared.
    pub operators_squared: u64,
    /// Bytes of function bodies, all core modules together.
    pub code_bytes: usize,
    /// The largest function body, in bytes.
    pub largest_function_bytes: usize,
    /// The most operators in one function.
    pub most_operators: usize,
    /// The most locals declared by one function.
    pub most_locals: u64,
    /// The most branches in one function.
    pub most_branches: usize,
    /// The deepest nesting of blocks in one function.
    pub deepest_nesting: usize,
    /// Core modules and nested components.
    pub modules: usize,
    /// Canonical functions.
    pub canonical_functions: usize,
}

impl CompileLimits {
    /// Measures `bytes` against the limits: the figures, or the reason
    /// naming the first limit broken (or what could not be parsed).
    pub fn check(&self, bytes: &[u8]) -> Result<Figures, String> {
        let mut f = Figures::default();
        let malformed = |e: wasmparser::BinaryReaderError| format!("not a valid component: {e}");
        let over = |what: &str, found: u64, limit: u64| {
            Err(format!(
                "{what} is {found}; the limit is {limit} (a bound on the cost of compiling it)"
            ))
        };
        let mut top_level = true;
        for payload in Parser::new(0).parse_all(bytes) {
            match payload.map_err(malformed)? {
                Payload::Version { encoding, .. } => {
                    if top_level && encoding != Encoding::Component {
                        return Err(
                            "not a valid component: this is a core module; build a component (e.g. for wasm32-wasip2)".into()
                        );
                    }
                    top_level = false;
                }
                Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => {
                    f.modules += 1;
                    if f.modules > self.modules {
                        return over(
                            "the number of core modules and nested components",
                            f.modules as u64,
                            self.modules as u64,
                        );
                    }
                }
                Payload::ComponentCanonicalSection(reader) => {
                    f.canonical_functions += reader.count() as usize;
                    if f.canonical_functions > self.canonical_functions {
                        return over(
                            "the number of canonical functions",
                            f.canonical_functions as u64,
                            self.canonical_functions as u64,
                        );
                    }
                }
                Payload::CodeSectionEntry(body) => {
                    f.functions += 1;
                    if f.functions > self.functions {
                        return over(
                            "the number of functions",
                            f.functions as u64,
                            self.functions as u64,
                        );
                    }
                    let size = body.range().len();
                    f.code_bytes += size;
                    f.largest_function_bytes = f.largest_function_bytes.max(size);
                    if size > self.function_bytes {
                        return over(
                            &format!("function {} (code bytes)", f.functions - 1),
                            size as u64,
                            self.function_bytes as u64,
                        );
                    }
                    if f.code_bytes > self.code_bytes {
                        return over(
                            "the total size of code (bytes)",
                            f.code_bytes as u64,
                            self.code_bytes as u64,
                        );
                    }
                    self.check_function(&body, f.functions - 1, &mut f)?;
                }
                _ => {}
            }
        }
        Ok(f)
    }

    /// Reads one function body's locals and operators into `f`.
    fn check_function(
        &self,
        body: &wasmparser::FunctionBody<'_>,
        index: usize,
        f: &mut Figures,
    ) -> Result<(), String> {
        let malformed = |e: wasmparser::BinaryReaderError| format!("not a valid component: {e}");
        let over = |what: &str, found: u64, limit: u64| {
            Err(format!(
                "function {index} ({what}) has {found}; the limit is {limit} (a bound on the cost of compiling it)"
            ))
        };
        let mut locals = 0u64;
        for entry in body.get_locals_reader().map_err(malformed)? {
            let (count, _) = entry.map_err(malformed)?;
            locals = locals.saturating_add(u64::from(count));
        }
        f.most_locals = f.most_locals.max(locals);
        if locals > self.function_locals {
            return over("locals", locals, self.function_locals);
        }
        let mut reader = body.get_operators_reader().map_err(malformed)?;
        let (mut operators, mut branches, mut depth, mut deepest) =
            (0usize, 0usize, 0usize, 0usize);
        while !reader.eof() {
            let op = reader.read().map_err(malformed)?;
            operators += 1;
            match op {
                Operator::Block { .. }
                | Operator::Loop { .. }
                | Operator::TryTable { .. }
                | Operator::Try { .. } => depth += 1,
                Operator::If { .. } => {
                    depth += 1;
                    branches += 1;
                }
                Operator::End => depth = depth.saturating_sub(1),
                Operator::Br { .. }
                | Operator::BrIf { .. }
                | Operator::BrOnNull { .. }
                | Operator::BrOnNonNull { .. }
                | Operator::BrOnCast { .. }
                | Operator::BrOnCastFail { .. } => branches += 1,
                Operator::BrTable { targets } => {
                    branches = branches.saturating_add(targets.len() as usize + 1);
                }
                _ => {}
            }
            deepest = deepest.max(depth);
            // Checked as they grow, so a bomb is refused as soon as it shows.
            if operators > self.function_operators {
                f.most_operators = f.most_operators.max(operators);
                return over(
                    "operators",
                    operators as u64,
                    self.function_operators as u64,
                );
            }
            if branches > self.function_branches {
                f.most_branches = f.most_branches.max(branches);
                return over("branches", branches as u64, self.function_branches as u64);
            }
            if deepest > self.nesting {
                f.deepest_nesting = f.deepest_nesting.max(deepest);
                return over("nested blocks", deepest as u64, self.nesting as u64);
            }
        }
        f.most_operators = f.most_operators.max(operators);
        f.most_branches = f.most_branches.max(branches);
        f.deepest_nesting = f.deepest_nesting.max(deepest);
        let operators = operators as u64;
        f.operators += operators;
        f.branches += branches as u64;
        f.operators_squared += operators * operators;
        if f.operators > self.operators {
            return Err(format!(
                "the total number of operators is {}; the limit is {} (a bound on the cost of compiling it)",
                f.operators, self.operators
            ));
        }
        if f.branches > self.branches {
            return Err(format!(
                "the total number of branches is {}; the limit is {} (a bound on the cost of compiling it)",
                f.branches, self.branches
            ));
        }
        if f.operators_squared > self.operators_squared {
            return Err(format!(
                "the sum of the squares of each function's operator count is {}; the limit is {} (a bound on the cost of compiling it: split large functions)",
                f.operators_squared, self.operators_squared
            ));
        }
        Ok(())
    }
}

/// How many compiles may run at once in this process: every core but one,
/// so a compile never takes all of them from shoppers (at least one).
fn compile_slots() -> &'static Arc<Semaphore> {
    static SLOTS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
        Arc::new(Semaphore::new(cores.saturating_sub(1).max(1)))
    })
}

/// Most refusals remembered: a component refused once is refused again
/// without parsing or compiling it (at start-up, on every reload, on a
/// repeated upload). Older ones are forgotten first.
const REMEMBERED_REFUSALS: usize = 256;

/// Compiles components within [`CompileLimits`]: checked first, then
/// compiled off the async runtime in one of the process's compile slots,
/// under the deadline.
#[derive(Debug)]
pub struct Compiler {
    limits: CompileLimits,
    refused: Mutex<Refusals>,
}

#[derive(Debug, Default)]
struct Refusals {
    reasons: HashMap<(String, Hook), String>,
    order: VecDeque<(String, Hook)>,
}

impl Compiler {
    /// A compiler with `limits`.
    pub fn new(limits: CompileLimits) -> Self {
        Self {
            limits,
            refused: Mutex::new(Refusals::default()),
        }
    }

    /// The limits it checks.
    pub fn limits(&self) -> &CompileLimits {
        &self.limits
    }

    /// Checks and compiles `bytes` (whose SHA-256 is `sha`) as a component
    /// of `hook`; the reason when it is refused.
    pub async fn compile(
        &self,
        runtime: &Runtime,
        hook: Hook,
        sha: &str,
        bytes: Vec<u8>,
    ) -> Result<Compiled, String> {
        let key = (sha.to_owned(), hook);
        if let Some(reason) = self.refusals().reasons.get(&key) {
            return Err(reason.clone());
        }
        // Only what the bytes themselves decide is remembered: a compile
        // that ran past its deadline on a busy machine may pass next time.
        let reason = match self.check_and_compile(runtime, hook, bytes).await {
            Ok(compiled) => return Ok(compiled),
            Err(Refusal::Passing(reason)) => return Err(reason),
            Err(Refusal::Lasting(reason)) => reason,
        };
        let mut refused = self.refusals();
        if refused
            .reasons
            .insert(key.clone(), reason.clone())
            .is_none()
        {
            refused.order.push_back(key);
        }
        while refused.order.len() > REMEMBERED_REFUSALS {
            if let Some(old) = refused.order.pop_front() {
                refused.reasons.remove(&old);
            }
        }
        Err(reason)
    }

    fn refusals(&self) -> std::sync::MutexGuard<'_, Refusals> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn check_and_compile(
        &self,
        runtime: &Runtime,
        hook: Hook,
        bytes: Vec<u8>,
    ) -> Result<Compiled, Refusal> {
        let module_bytes = runtime.limits.module_bytes;
        if bytes.len() > module_bytes {
            return Err(Refusal::Lasting(format!(
                "the component is {} bytes; the limit is {module_bytes}",
                bytes.len()
            )));
        }
        // The check reads every operator (milliseconds for megabytes): off
        // the async runtime too, but needs no compile slot.
        let limits = self.limits.clone();
        let (figures, bytes) = tokio::task::spawn_blocking(move || {
            let figures = limits.check(&bytes);
            (figures, bytes)
        })
        .await
        .map_err(|e| Refusal::Passing(format!("checking the component stopped: {e}")))?;
        let figures = figures.map_err(Refusal::Lasting)?;
        let slot = compile_slots()
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Refusal::Passing(format!("compiling is shut down: {e}")))?;
        let runtime = runtime.clone();
        let started = Instant::now();
        let compile = tokio::task::spawn_blocking(move || {
            let compiled = runtime.compile(hook, &bytes);
            // The slot is held until the compile really ends, also past the
            // deadline: wasmtime cannot stop it, and the cores are what the
            // slots ration.
            drop(slot);
            compiled
        });
        let deadline = self.limits.deadline;
        let outcome = tokio::time::timeout(deadline, compile).await;
        let elapsed = started.elapsed();
        metrics::histogram!("plugin_compile_seconds").record(elapsed.as_secs_f64());
        match outcome {
            Ok(joined) => {
                let compiled = joined
                    .map_err(|e| Refusal::Passing(format!("compilation stopped: {e}")))?
                    .map_err(Refusal::Lasting)?;
                tracing::info!(
                    hook = hook.as_str(),
                    ms = elapsed.as_millis() as u64,
                    functions = figures.functions,
                    code_bytes = figures.code_bytes,
                    "plugin component compiled"
                );
                Ok(compiled)
            }
            Err(_) => {
                tracing::warn!(
                    hook = hook.as_str(),
                    ?figures,
                    "a plugin component passed the compile deadline; refused (the compile runs on until it ends)"
                );
                Err(Refusal::Passing(format!(
                    "compiling it took longer than the limit of {} s",
                    deadline.as_secs()
                )))
            }
        }
    }
}

/// Why a component was not compiled.
enum Refusal {
    /// The bytes themselves: refused again without looking.
    Lasting(String),
    /// The moment (a deadline on a busy machine, a stopped task): another
    /// try may pass.
    Passing(String),
}
