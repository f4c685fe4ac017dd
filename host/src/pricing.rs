//! The pricing pipeline: catalog prices → pricing hooks → promotion hooks →
//! validation hooks. The cart view and checkout both call [`Pipeline::price`]
//! on a snapshot of the cart, so what a shopper sees is what checkout charges.
//!
//! Each plugin sees the lines of its scope (all of them for a platform
//! plugin, its seller's for a seller's plugin) with the prices so far, and
//! everything it answers is checked before it is applied, the cart's sums
//! after it included: an answer whose amounts no longer add up is that
//! plugin's invalid output, never the shopper's error. A plugin that fails
//! is, by its policy, a violation that blocks checkout (`closed`) or skipped
//! and recorded (`open`); the rest of the pipeline goes on.
//!
//! One run's plugins share a budget of fuel and wall time
//! ([`Limits::budget`](crate::plugins::limits::Limits::budget)): each call
//! gets the least of its own limits and what is left, and a plugin that
//! finds it spent fails with that reason, under its own policy.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::priced::{checked_line_total, line_total, overflow, totals};
use crate::domain::{
    Adjustment, Cart, Claim, FailurePolicy, PluginRun, PricedCart, PricedItem, Role, Violation,
};
use crate::error::{Error, Result};
use crate::plugins::limits::Budget;
use crate::plugins::registry::{Installed, Registry, Snapshot};
use crate::plugins::runtime::{
    self, Amount, CallReport, Failure, FailureKind, Output, Runtime, Target,
};

/// Who is buying, as plugins see them.
#[derive(Debug, Clone)]
pub struct Customer {
    /// The user's id.
    pub id: Uuid,
    /// The user's role.
    pub role: Role,
    /// How many orders the user placed before.
    pub order_count: i64,
}

/// The pipeline, with the plugins in force.
#[derive(Debug, Clone)]
pub struct Pipeline {
    registry: Arc<Registry>,
}

/// The currency of an empty cart.
pub const DEFAULT_CURRENCY: &str = "USD";

impl Pipeline {
    /// The pipeline over the plugins of `registry`.
    pub fn new(registry: Arc<Registry>) -> Self {
        Self { registry }
    }

    /// The registry of plugins.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Prices `cart` for `customer` at `now`, with the plugins in force now
    /// (one snapshot for the whole run). Plugin calls are CPU work, each
    /// bounded in time: on a multi-threaded runtime they run here, after
    /// `block_in_place` hands this worker's other tasks to another thread
    /// (no wait for a thread to wake: a `spawn_blocking` round trip added
    /// ~60 µs to four plugins' ~100 µs, measured with `cargo xtask bench`);
    /// elsewhere on the blocking pool. With plugins installed, the whole
    /// run's time is the `pricing_seconds` metric.
    pub async fn price(
        &self,
        cart: &Cart,
        customer: &Customer,
        now: DateTime<Utc>,
    ) -> Result<PricedCart> {
        let snapshot = self.registry.snapshot();
        let runtime = self.registry.runtime();
        if snapshot.is_empty() {
            return price_with(&snapshot, runtime, cart, customer, now);
        }
        let started = std::time::Instant::now();
        let priced = if tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread
        {
            tokio::task::block_in_place(|| price_with(&snapshot, runtime, cart, customer, now))
        } else {
            let runtime = runtime.clone();
            let (cart, customer) = (cart.clone(), customer.clone());
            tokio::task::spawn_blocking(move || {
                price_with(&snapshot, &runtime, &cart, &customer, now)
            })
            .await
            .map_err(|e| Error::Internal(e.into()))?
        };
        metrics::histogram!("pricing_seconds").record(started.elapsed().as_secs_f64());
        priced
    }
}

/// The whole pipeline on one snapshot of the plugins.
fn price_with(
    snapshot: &Snapshot,
    runtime: &Runtime,
    cart: &Cart,
    customer: &Customer,
    now: DateTime<Utc>,
) -> Result<PricedCart> {
    let currency = cart
        .lines
        .first()
        .map_or(DEFAULT_CURRENCY, |l| l.product.currency.as_str())
        .to_owned();
    let mut run = Run {
        cart,
        customer,
        now,
        currency,
        violations: Vec::new(),
        plugins: Vec::new(),
        adjustments: Vec::new(),
        seller_order_discounts: HashMap::new(),
        budget: runtime.limits.budget(cart.lines.len()),
    };
    let mut items = Vec::with_capacity(cart.lines.len());
    for line in &cart.lines {
        let p = &line.product;
        if p.currency != run.currency {
            run.violations.push(Violation {
                code: "currency_mismatch".into(),
                message: format!(
                    "{} is priced in {}, the cart in {}",
                    p.name, p.currency, run.currency
                ),
                product_id: Some(p.id),
                plugin: "host".into(),
            });
        }
        items.push(PricedItem {
            product_id: p.id,
            sku: p.sku.clone(),
            name: p.name.clone(),
            seller_id: p.seller_id,
            quantity: line.quantity,
            unit_price: p.price,
            line_total: checked_line_total(p.price, line.quantity)?,
            adjustments: Vec::new(),
        });
    }
    // Catalog prices × quantities that do not add up are the shopper's
    // cart; from here on every step keeps the sums within range, so an
    // overflow can only be a plugin's answer.
    if !sums_fit(&items, &[]) {
        return Err(overflow());
    }
    for plugin in &snapshot.pricing {
        run.step(runtime, plugin, &mut items);
    }
    for plugin in &snapshot.promotion {
        run.step(runtime, plugin, &mut items);
    }
    for plugin in &snapshot.validation {
        run.step(runtime, plugin, &mut items);
    }
    let Run {
        violations,
        plugins,
        adjustments,
        currency,
        ..
    } = run;
    totals(
        items,
        cart.codes.clone(),
        adjustments,
        currency,
        violations,
        plugins,
    )
}

/// The state of one pipeline run.
struct Run<'a> {
    cart: &'a Cart,
    customer: &'a Customer,
    now: DateTime<Utc>,
    currency: String,
    violations: Vec<Violation>,
    plugins: Vec<PluginRun>,
    adjustments: Vec<Adjustment>,
    /// What each seller's plugins took off the order so far (positive).
    seller_order_discounts: HashMap<Uuid, i64>,
    /// What is left of the run's plugin fuel and time.
    budget: Budget,
}

impl Run<'_> {
    /// Calls one plugin on the lines of its scope, within what is left of
    /// the budget, and applies its checked answer.
    fn step(&mut self, runtime: &Runtime, plugin: &Installed, items: &mut [PricedItem]) {
        let scope: Vec<usize> = (0..items.len())
            .filter(|&i| {
                plugin
                    .plugin
                    .seller()
                    .is_none_or(|s| items[i].seller_id == s)
            })
            .collect();
        if scope.is_empty() {
            // A seller's plugin with none of its seller's lines has nothing to do.
            return;
        }
        let own = runtime.limits.grant(scope.len());
        let (result, elapsed) = match self.budget.grant(own) {
            Some(grant) => {
                let input = self.input(plugin, items, &scope);
                let report = runtime.call_with(&plugin.compiled, &input, grant);
                self.budget.charge(report.fuel_used, report.elapsed);
                record_metrics(plugin, &report);
                (report.result, Some(report.elapsed))
            }
            None => {
                let failure = Failure::new(FailureKind::Budget, self.budget.spent_reason());
                record_failure(&plugin.plugin.name, failure.kind);
                (Err(failure), None)
            }
        };
        let applied = result.and_then(|output| self.apply(plugin, output, items, &scope));
        // Recorded once the answer is applied, so the failure a merchant
        // reads in the plugin's statistics is the one the cart view showed
        // (an answer the pipeline refuses included).
        plugin.stats.record(elapsed, applied.as_ref().err());
        let meta = &plugin.plugin;
        let mut entry = PluginRun {
            id: meta.id,
            name: meta.name.clone(),
            version: meta.version,
            outcome: "applied".into(),
            reason: None,
        };
        if let Err(failure) = applied {
            tracing::warn!(plugin = %meta.name, kind = ?failure.kind, reason = %failure.reason, "plugin failed");
            entry.reason = Some(failure.reason.clone());
            match meta.failure_policy {
                FailurePolicy::Open => entry.outcome = "skipped".into(),
                FailurePolicy::Closed => {
                    entry.outcome = "failed".into();
                    self.violations.push(Violation {
                        code: "plugin_failed".into(),
                        message: format!("plugin {} failed: {}", meta.name, failure.reason),
                        product_id: None,
                        plugin: meta.name.clone(),
                    });
                }
            }
        }
        self.plugins.push(entry);
    }

    /// The input of one call: the lines of the plugin's scope, as priced so far.
    fn input(&self, plugin: &Installed, items: &[PricedItem], scope: &[usize]) -> runtime::Cart {
        let lines = scope
            .iter()
            .map(|&i| {
                let product = &self.cart.lines[i].product;
                runtime::Line {
                    product_id: product.id.to_string(),
                    sku: product.sku.clone(),
                    seller_id: product.seller_id.to_string(),
                    quantity: u32::try_from(items[i].quantity).unwrap_or(u32::MAX),
                    unit_price: items[i].unit_price,
                    tags: product.tags.clone(),
                    attributes: product
                        .attributes
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                }
            })
            .collect();
        runtime::Cart {
            lines,
            customer: runtime::Customer {
                id: self.customer.id.to_string(),
                role: self.customer.role.as_str().to_owned(),
                order_count: u32::try_from(self.customer.order_count).unwrap_or(u32::MAX),
            },
            codes: self.cart.codes.clone(),
            currency: self.currency.clone(),
            config: plugin.config_text.clone(),
            now_ms: self.now.timestamp_millis(),
        }
    }

    /// Applies a plugin's answer, all of it or (on any invalid part) none.
    /// The cart's sums after it must still add up: when they do not, the
    /// answer is this plugin's invalid output and nothing of it stays.
    fn apply(
        &mut self,
        plugin: &Installed,
        output: Output,
        items: &mut [PricedItem],
        scope: &[usize],
    ) -> Result<(), Failure> {
        let mut undo = Undo::default();
        let applied = self.apply_all(plugin, output, items, scope, &mut undo);
        let applied = applied.and_then(|()| {
            if sums_fit(items, &self.adjustments) {
                Ok(())
            } else {
                Err(too_large())
            }
        });
        if applied.is_err() {
            undo.revert(self, items);
        }
        applied
    }

    /// Applies a plugin's answer, recording in `undo` how to take it back.
    fn apply_all(
        &mut self,
        plugin: &Installed,
        output: Output,
        items: &mut [PricedItem],
        scope: &[usize],
        undo: &mut Undo,
    ) -> Result<(), Failure> {
        let name = &plugin.plugin.name;
        // Line numbers were checked against the input, which had one line
        // per scope entry; `get` keeps a miss a failure, never a panic.
        let item_of = |line: u32| {
            scope
                .get(line as usize)
                .copied()
                .ok_or_else(|| invalid(format!("line {line} of {}", scope.len())))
        };
        match output {
            Output::Pricing(changes) => {
                for c in changes {
                    let i = item_of(c.line)?;
                    let item = &mut items[i];
                    undo.prices.push((i, item.unit_price, item.line_total));
                    item.unit_price = c.unit_price;
                    item.line_total = line_total(item).map_err(|_| {
                        invalid(format!(
                            "unit price {} × quantity {} is too large",
                            c.unit_price, item.quantity
                        ))
                    })?;
                }
            }
            Output::Promotion(discounts) => {
                let mut line_adds: Vec<(usize, Adjustment)> = Vec::new();
                let mut order_adds: Vec<Adjustment> = Vec::new();
                // What an order discount applies to: the scope's lines before any
                // discount. Stacking with earlier discounts is clamped below.
                let mut scope_total: i64 = 0;
                for &i in scope {
                    scope_total = checked_line_total(items[i].unit_price, items[i].quantity)
                        .ok()
                        .and_then(|t| scope_total.checked_add(t))
                        .ok_or_else(too_large)?;
                }
                for d in discounts {
                    if let Some(code) = &d.code
                        && !self.cart.codes.iter().any(|c| c.eq_ignore_ascii_case(code))
                    {
                        return Err(invalid(format!(
                            "a discount for code {code}, which the shopper did not enter"
                        )));
                    }
                    let (base, line) = match d.target {
                        Target::Line(l) => {
                            let i = item_of(l)?;
                            (
                                checked_line_total(items[i].unit_price, items[i].quantity)
                                    .map_err(|_| too_large())?,
                                Some(i),
                            )
                        }
                        Target::Order => (scope_total, None),
                    };
                    let amount = match d.amount {
                        Amount::Fixed(m) => m,
                        Amount::Percent(bp) => {
                            i64::try_from(i128::from(base) * i128::from(bp) / 10_000)
                                .map_err(|_| too_large())?
                        }
                    };
                    if amount > base {
                        return Err(invalid(format!(
                            "a discount of {amount} on {base}, more than it applies to"
                        )));
                    }
                    let adjustment = Adjustment {
                        label: d.label,
                        amount: -amount,
                        code: d.code.map(|c| c.to_uppercase()),
                        plugin: name.clone(),
                        limit: d.limit.map(|l| Claim {
                            plugin_id: plugin.plugin.id,
                            key: l.key,
                            total: l.total,
                            per_customer: l.per_customer,
                        }),
                    };
                    match line {
                        Some(i) => line_adds.push((i, adjustment)),
                        None => order_adds.push(adjustment),
                    }
                }
                // Stacked discounts never take a line or the order below zero.
                for (i, mut adjustment) in line_adds {
                    let item = &mut items[i];
                    adjustment.amount = adjustment.amount.max(-item.line_total);
                    undo.line_adjustments
                        .push((i, item.adjustments.len(), item.line_total));
                    if adjustment.amount != 0 {
                        item.adjustments.push(adjustment);
                    }
                    item.line_total = line_total(item).map_err(|_| too_large())?;
                }
                let mut left = items
                    .iter()
                    .map(|i| i.line_total)
                    .chain(self.adjustments.iter().map(|a| a.amount))
                    .try_fold(0i64, i64::checked_add)
                    .ok_or_else(too_large)?;
                // A seller's order is its own lines: its plugins' order
                // discounts never take more than what is left of them.
                let seller = plugin.plugin.seller();
                if let Some(seller) = seller {
                    let own = scope
                        .iter()
                        .map(|&i| items[i].line_total)
                        .try_fold(0i64, i64::checked_add)
                        .ok_or_else(too_large)?;
                    let taken = self
                        .seller_order_discounts
                        .get(&seller)
                        .copied()
                        .unwrap_or(0);
                    undo.seller_taken = Some((seller, taken));
                    left = left.min(own.checked_sub(taken).ok_or_else(too_large)?);
                }
                undo.order_adjustments = Some(self.adjustments.len());
                for mut adjustment in order_adds {
                    adjustment.amount = adjustment.amount.max(-left.max(0));
                    left = left.checked_add(adjustment.amount).ok_or_else(too_large)?;
                    if let Some(seller) = seller {
                        let taken = self.seller_order_discounts.entry(seller).or_default();
                        *taken = taken.checked_sub(adjustment.amount).ok_or_else(too_large)?;
                    }
                    if adjustment.amount != 0 {
                        self.adjustments.push(adjustment);
                    }
                }
            }
            Output::Validation(found) => {
                undo.violations = Some(self.violations.len());
                for v in found {
                    let product_id = match v.line {
                        Some(l) => Some(items[item_of(l)?].product_id),
                        None => None,
                    };
                    self.violations.push(Violation {
                        code: v.code,
                        message: v.message,
                        product_id,
                        plugin: name.clone(),
                    });
                }
            }
        }
        Ok(())
    }
}

fn invalid(reason: String) -> Failure {
    Failure::new(FailureKind::InvalidOutput, reason)
}

/// An answer after which the cart's amounts no longer fit in an `i64`.
fn too_large() -> Failure {
    invalid("its answer makes the cart's amounts too large to add up".into())
}

/// How to take back what one answer changed, newest first.
#[derive(Default)]
struct Undo {
    /// A line's unit price and total before a price change.
    prices: Vec<(usize, i64, i64)>,
    /// A line's number of adjustments and total before a discount.
    line_adjustments: Vec<(usize, usize, i64)>,
    /// The number of order adjustments before the answer's.
    order_adjustments: Option<usize>,
    /// What the seller's plugins had taken off its order before.
    seller_taken: Option<(Uuid, i64)>,
    /// The number of violations before the answer's.
    violations: Option<usize>,
}

impl Undo {
    fn revert(self, run: &mut Run<'_>, items: &mut [PricedItem]) {
        for (i, unit_price, line_total) in self.prices.into_iter().rev() {
            items[i].unit_price = unit_price;
            items[i].line_total = line_total;
        }
        for (i, adjustments, line_total) in self.line_adjustments.into_iter().rev() {
            items[i].adjustments.truncate(adjustments);
            items[i].line_total = line_total;
        }
        if let Some(len) = self.order_adjustments {
            run.adjustments.truncate(len);
        }
        if let Some((seller, taken)) = self.seller_taken {
            run.seller_order_discounts.insert(seller, taken);
        }
        if let Some(len) = self.violations {
            run.violations.truncate(len);
        }
    }
}

fn record_metrics(plugin: &Installed, report: &CallReport) {
    let name = plugin.plugin.name.clone();
    metrics::counter!("plugin_calls_total", "plugin" => name.clone()).increment(1);
    metrics::histogram!("plugin_call_seconds", "plugin" => name.clone())
        .record(report.elapsed.as_secs_f64());
    metrics::histogram!("plugin_fuel_used", "plugin" => name.clone())
        .record(report.fuel_used as f64);
    if let Err(f) = &report.result {
        record_failure(&name, f.kind);
    }
}

fn record_failure(plugin: &str, kind: FailureKind) {
    let kind = serde_json::to_value(kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    metrics::counter!("plugin_failures_total", "plugin" => plugin.to_owned(), "kind" => kind)
        .increment(1);
}

/// Whether the cart's sums as [`totals`] adds them up — each line's total,
/// the subtotal, the discounts and the total — all fit in an `i64`.
fn sums_fit(items: &[PricedItem], order_adjustments: &[Adjustment]) -> bool {
    let sums = || -> Option<()> {
        let mut subtotal: i64 = 0;
        let mut discount_total: i64 = 0;
        for item in items {
            let gross = item.unit_price.checked_mul(item.quantity)?;
            subtotal = subtotal.checked_add(gross)?;
            let mut line = gross;
            for a in &item.adjustments {
                discount_total = discount_total.checked_sub(a.amount)?;
                line = line.checked_add(a.amount)?;
            }
        }
        for a in order_adjustments {
            discount_total = discount_total.checked_sub(a.amount)?;
        }
        subtotal.checked_sub(discount_total).map(|_| ())
    };
    sums().is_some()
}
