//! The pricing pipeline: catalog prices → pricing hooks → promotion hooks →
//! validation hooks. The cart view and checkout both call [`Pipeline::price`]
//! on a snapshot of the cart, so what a shopper sees is what checkout charges.
//!
//! Each plugin sees the lines of its scope (all of them for a platform
//! plugin, its seller's for a seller's plugin) with the prices so far, and
//! everything it answers is checked before it is applied. A plugin that
//! fails is, by its policy, a violation that blocks checkout (`closed`) or
//! skipped and recorded (`open`); the rest of the pipeline goes on.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Role;
use crate::error::{Error, Result};
use crate::plugins::registry::{FailurePolicy, Installed, Registry, Snapshot};
use crate::plugins::runtime::{
    self, Amount, CallReport, Failure, FailureKind, Output, Runtime, Target,
};
use crate::store::carts::Cart;

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

/// A change to a price, on a line or on the whole order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Adjustment {
    /// What the shopper sees, e.g. "10% off shoes".
    pub label: String,
    /// Minor units; negative for a discount.
    pub amount: i64,
    /// The promotion code it came from.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<String>,
    /// The plugin that made it (its name).
    pub plugin: String,
    /// The usage limit it counts against, enforced at checkout.
    #[serde(skip)]
    pub limit: Option<Claim>,
}

/// A use of a limited discount, taken inside the checkout transaction.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Claim {
    /// The plugin whose counter it is.
    pub plugin_id: Uuid,
    /// The counter's key.
    pub key: String,
    /// Most uses across all customers.
    pub total: Option<u32>,
    /// Most uses by one customer.
    pub per_customer: Option<u32>,
}

/// Something that blocks checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Violation {
    /// A stable snake_case code.
    pub code: String,
    /// What the shopper should know.
    pub message: String,
    /// The line it is about, if one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub product_id: Option<Uuid>,
    /// Who found it: a plugin's name, or `host`.
    pub plugin: String,
}

/// A priced cart line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PricedItem {
    /// The product.
    pub product_id: Uuid,
    /// Its SKU.
    pub sku: String,
    /// Its name.
    pub name: String,
    /// Its seller.
    pub seller_id: Uuid,
    /// How many.
    pub quantity: i64,
    /// Price of one unit after pricing hooks, in minor units.
    pub unit_price: i64,
    /// `unit_price × quantity` plus this line's adjustments.
    pub line_total: i64,
    /// Discounts on this line.
    pub adjustments: Vec<Adjustment>,
}

/// A plugin that took part in pricing, as the order records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PluginRun {
    /// The plugin's id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// The version that ran.
    pub version: i64,
    /// `applied`; `skipped` when it failed under the `open` policy;
    /// `failed` under `closed`.
    pub outcome: String,
    /// Why it was skipped or failed.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reason: Option<String>,
}

/// A priced cart: what the cart view shows and what checkout charges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PricedCart {
    /// The lines.
    pub items: Vec<PricedItem>,
    /// The promotion codes entered.
    pub codes: Vec<String>,
    /// Adjustments on the whole order.
    pub adjustments: Vec<Adjustment>,
    /// Sum of `unit_price × quantity`.
    pub subtotal: i64,
    /// Sum of every discount, as a positive number.
    pub discount_total: i64,
    /// What is charged: `subtotal − discount_total`.
    pub total: i64,
    /// ISO 4217 code of every amount.
    pub currency: String,
    /// What blocks checkout.
    pub violations: Vec<Violation>,
    /// The plugins that ran.
    #[serde(skip)]
    pub plugins: Vec<PluginRun>,
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
    for plugin in &snapshot.pricing {
        run.step(runtime, plugin, &mut items)?;
    }
    for plugin in &snapshot.promotion {
        run.step(runtime, plugin, &mut items)?;
    }
    for plugin in &snapshot.validation {
        run.step(runtime, plugin, &mut items)?;
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
}

impl Run<'_> {
    /// Calls one plugin on the lines of its scope and applies its checked answer.
    fn step(
        &mut self,
        runtime: &Runtime,
        plugin: &Installed,
        items: &mut [PricedItem],
    ) -> Result<()> {
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
            return Ok(());
        }
        let input = self.input(plugin, items, &scope);
        let report = runtime.call(&plugin.compiled, &input);
        record_metrics(plugin, &report);
        let applied = report
            .result
            .and_then(|output| self.apply(plugin, output, items, &scope));
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
        Ok(())
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
    fn apply(
        &mut self,
        plugin: &Installed,
        output: Output,
        items: &mut [PricedItem],
        scope: &[usize],
    ) -> Result<(), Failure> {
        let invalid = |reason: String| Failure::new(FailureKind::InvalidOutput, reason);
        let name = &plugin.plugin.name;
        match output {
            Output::Pricing(changes) => {
                for c in &changes {
                    let i = scope[c.line as usize];
                    checked_line_total(c.unit_price, items[i].quantity)
                        .map_err(|_| invalid(format!("unit price {} overflows", c.unit_price)))?;
                }
                for c in changes {
                    let item = &mut items[scope[c.line as usize]];
                    item.unit_price = c.unit_price;
                    item.line_total =
                        line_total(item).map_err(|_| invalid("amounts overflow".into()))?;
                }
            }
            Output::Promotion(discounts) => {
                let mut line_adds: Vec<(usize, Adjustment)> = Vec::new();
                let mut order_adds: Vec<Adjustment> = Vec::new();
                // What an order discount applies to: the scope's lines before any
                // discount. Stacking with earlier discounts is clamped below.
                let scope_total: i64 = scope
                    .iter()
                    .map(|&i| items[i].unit_price.saturating_mul(items[i].quantity))
                    .sum();
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
                            let i = scope[l as usize];
                            (
                                checked_line_total(items[i].unit_price, items[i].quantity)
                                    .unwrap_or(i64::MAX),
                                Some(i),
                            )
                        }
                        Target::Order => (scope_total, None),
                    };
                    let amount = match d.amount {
                        Amount::Fixed(m) => m,
                        Amount::Percent(bp) => (i128::from(base) * i128::from(bp) / 10_000) as i64,
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
                    if adjustment.amount != 0 {
                        item.adjustments.push(adjustment);
                    }
                    item.line_total =
                        line_total(item).map_err(|_| invalid("amounts overflow".into()))?;
                }
                let lines_total: i64 = items.iter().map(|i| i.line_total).sum();
                let mut left = lines_total + self.adjustments.iter().map(|a| a.amount).sum::<i64>();
                // A seller's order is its own lines: its plugins' order
                // discounts never take more than what is left of them.
                let seller = plugin.plugin.seller();
                if let Some(seller) = seller {
                    let own: i64 = scope.iter().map(|&i| items[i].line_total).sum();
                    let taken = self
                        .seller_order_discounts
                        .get(&seller)
                        .copied()
                        .unwrap_or(0);
                    left = left.min(own - taken);
                }
                for mut adjustment in order_adds {
                    adjustment.amount = adjustment.amount.max(-left.max(0));
                    left += adjustment.amount;
                    if let Some(seller) = seller {
                        *self.seller_order_discounts.entry(seller).or_default() -=
                            adjustment.amount;
                    }
                    if adjustment.amount != 0 {
                        self.adjustments.push(adjustment);
                    }
                }
            }
            Output::Validation(found) => {
                for v in found {
                    self.violations.push(Violation {
                        code: v.code,
                        message: v.message,
                        product_id: v.line.map(|l| items[scope[l as usize]].product_id),
                        plugin: name.clone(),
                    });
                }
            }
        }
        Ok(())
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
        let kind = serde_json::to_value(f.kind)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        metrics::counter!("plugin_failures_total", "plugin" => name, "kind" => kind).increment(1);
    }
}

fn overflow() -> Error {
    Error::invalid("cart", "amounts too large to add up")
}

fn checked_line_total(unit_price: i64, quantity: i64) -> Result<i64> {
    unit_price.checked_mul(quantity).ok_or_else(overflow)
}

/// A line's total: its price times its quantity, plus its adjustments.
fn line_total(item: &PricedItem) -> Result<i64> {
    let mut total = checked_line_total(item.unit_price, item.quantity)?;
    for a in &item.adjustments {
        total = total.checked_add(a.amount).ok_or_else(overflow)?;
    }
    Ok(total.max(0))
}

/// Adds up a priced cart; every sum is checked.
fn totals(
    mut items: Vec<PricedItem>,
    codes: Vec<String>,
    adjustments: Vec<Adjustment>,
    currency: String,
    violations: Vec<Violation>,
    plugins: Vec<PluginRun>,
) -> Result<PricedCart> {
    let mut subtotal: i64 = 0;
    let mut discount_total: i64 = 0;
    for item in &mut items {
        subtotal = subtotal
            .checked_add(checked_line_total(item.unit_price, item.quantity)?)
            .ok_or_else(overflow)?;
        for a in &item.adjustments {
            discount_total = discount_total.checked_sub(a.amount).ok_or_else(overflow)?;
        }
        item.line_total = line_total(item)?;
    }
    for a in &adjustments {
        discount_total = discount_total.checked_sub(a.amount).ok_or_else(overflow)?;
    }
    let total = subtotal
        .checked_sub(discount_total)
        .ok_or_else(overflow)?
        .max(0);
    Ok(PricedCart {
        items,
        codes,
        adjustments,
        subtotal,
        discount_total,
        total,
        currency,
        violations,
        plugins,
    })
}

impl PricedCart {
    /// The limited discounts this cart uses.
    pub fn claims(&self) -> impl Iterator<Item = &Claim> {
        self.items
            .iter()
            .flat_map(|i| i.adjustments.iter())
            .chain(self.adjustments.iter())
            .filter_map(|a| a.limit.as_ref())
    }

    /// The cart without the discounts whose limit is used up (`exhausted`
    /// says which, by plugin and key), totals recomputed.
    pub fn without(self, exhausted: &[(Uuid, String)]) -> Result<Self> {
        let keep = |a: &Adjustment| {
            a.limit
                .as_ref()
                .is_none_or(|c| !exhausted.contains(&(c.plugin_id, c.key.clone())))
        };
        let Self {
            mut items,
            codes,
            mut adjustments,
            currency,
            violations,
            plugins,
            ..
        } = self;
        for item in &mut items {
            item.adjustments.retain(keep);
        }
        adjustments.retain(keep);
        totals(items, codes, adjustments, currency, violations, plugins)
    }

    /// The label of the discount that made `claim`.
    pub fn adjustment_label(&self, claim: &Claim) -> String {
        self.items
            .iter()
            .flat_map(|i| i.adjustments.iter())
            .chain(self.adjustments.iter())
            .find(|a| a.limit.as_ref() == Some(claim))
            .map_or_else(
                || claim.key.clone(),
                |a| a.code.clone().unwrap_or_else(|| a.label.clone()),
            )
    }

    /// The first plugin that failed under the `closed` policy, and why.
    pub fn failed_plugin(&self) -> Option<&PluginRun> {
        self.plugins.iter().find(|p| p.outcome == "failed")
    }
}
