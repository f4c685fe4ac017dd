//! Plugin input and output as JSON, for `dry-run` and the local runner
//! (`cargo xtask plugin run`), which print the same document for the same input.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::limits::Limits;
use super::runtime::{self, Amount, CallReport, Failure, LogLine, Output, Target};

/// A sample cart, shaped like the plugin's input.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleCart {
    /// The lines.
    pub lines: Vec<SampleLine>,
    /// The customer (defaults: a new customer).
    #[serde(default)]
    pub customer: SampleCustomer,
    /// Entered codes.
    #[serde(default)]
    pub codes: Vec<String>,
    /// ISO 4217 code.
    #[serde(default = "usd")]
    pub currency: String,
    /// The merchant config (default: the plugin's own).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub config: Option<serde_json::Value>,
    /// The time in ms since the epoch (default: now).
    pub now_ms: Option<i64>,
}

fn usd() -> String {
    "USD".into()
}

/// A line of a sample cart.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleLine {
    /// Product id.
    #[serde(default)]
    pub product_id: String,
    /// SKU.
    #[serde(default)]
    pub sku: String,
    /// Seller id.
    #[serde(default)]
    pub seller_id: String,
    /// Quantity.
    pub quantity: u32,
    /// Unit price in minor units.
    pub unit_price: i64,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Attributes.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// The customer of a sample cart.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SampleCustomer {
    /// User id.
    #[serde(default)]
    pub id: String,
    /// Role.
    #[serde(default = "customer")]
    pub role: String,
    /// Earlier orders.
    #[serde(default)]
    pub order_count: u32,
}

fn customer() -> String {
    "customer".into()
}

impl Default for SampleCustomer {
    fn default() -> Self {
        Self {
            id: String::new(),
            role: customer(),
            order_count: 0,
        }
    }
}

impl SampleCart {
    /// The plugin input, with `default_config` unless the sample has one.
    pub fn to_input(&self, default_config: &str, now_ms: i64) -> runtime::Cart {
        runtime::Cart {
            lines: self
                .lines
                .iter()
                .map(|l| runtime::Line {
                    product_id: l.product_id.clone(),
                    sku: l.sku.clone(),
                    seller_id: l.seller_id.clone(),
                    quantity: l.quantity,
                    unit_price: l.unit_price,
                    tags: l.tags.clone(),
                    attributes: l
                        .attributes
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                })
                .collect(),
            customer: runtime::Customer {
                id: self.customer.id.clone(),
                role: self.customer.role.clone(),
                order_count: self.customer.order_count,
            },
            codes: self.codes.iter().map(|c| c.to_uppercase()).collect(),
            currency: self.currency.clone(),
            config: self
                .config
                .as_ref()
                .map_or_else(|| default_config.to_owned(), serde_json::Value::to_string),
            now_ms: self.now_ms.unwrap_or(now_ms),
        }
    }
}

/// What one call did, as `dry-run` and the runner report it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Report {
    /// The answer, when the call succeeded.
    #[schema(value_type = Option<Object>)]
    pub output: Option<serde_json::Value>,
    /// Why the call failed, when it did.
    pub failure: Option<Failure>,
    /// Fuel used.
    pub fuel_used: u64,
    /// Fuel the call was given.
    pub fuel_limit: u64,
    /// Wall time of instantiation and call, in microseconds.
    pub time_us: u64,
    /// Largest linear memory reached, in bytes.
    pub peak_memory_bytes: usize,
    /// What it logged.
    pub logs: Vec<LogLine>,
    /// Log lines dropped past the bounds.
    pub logs_dropped: usize,
    /// Wall time the call was given, in microseconds (for this cart's lines).
    pub time_limit_us: u64,
    /// Largest linear memory the call was allowed, in bytes.
    pub memory_limit_bytes: usize,
    /// Most log lines kept.
    pub log_lines_limit: usize,
    /// Most log bytes kept.
    pub log_bytes_limit: usize,
}

impl Report {
    /// The report of a call on a cart of `lines` lines, made with its own
    /// `limits` ([`Limits::grant`]: no request budget), which it shows
    /// beside what the call used.
    pub fn new(report: CallReport, limits: &Limits, lines: usize) -> Self {
        let (output, failure) = match report.result {
            Ok(o) => (Some(output_json(&o)), None),
            Err(f) => (None, Some(f)),
        };
        Self {
            output,
            failure,
            fuel_used: report.fuel_used,
            fuel_limit: limits.fuel(lines),
            time_us: report.elapsed.as_micros() as u64,
            peak_memory_bytes: report.peak_memory_bytes,
            logs: report.logs,
            logs_dropped: report.logs_dropped,
            time_limit_us: limits.time_ms(lines).saturating_mul(1_000),
            memory_limit_bytes: limits.memory_bytes,
            log_lines_limit: limits.log_lines,
            log_bytes_limit: limits.log_bytes,
        }
    }
}

/// A plugin's answer as JSON.
pub fn output_json(output: &Output) -> serde_json::Value {
    use serde_json::json;
    match output {
        Output::Pricing(changes) => {
            json!({"price_changes": changes.iter().map(|c| json!({"line": c.line, "unit_price": c.unit_price})).collect::<Vec<_>>()})
        }
        Output::Promotion(discounts) => json!({"discounts": discounts.iter().map(|d| json!({
            "target": match d.target { Target::Line(l) => json!({"line": l}), Target::Order => json!("order") },
            "amount": match d.amount { Amount::Fixed(m) => json!({"fixed": m}), Amount::Percent(bp) => json!({"percent": bp}) },
            "label": d.label,
            "code": d.code,
            "limit": d.limit.as_ref().map(|l| json!({"key": l.key, "total": l.total, "per_customer": l.per_customer})),
        })).collect::<Vec<_>>()}),
        Output::Validation(violations) => json!({"violations": violations.iter().map(|v| json!({
            "code": v.code, "message": v.message, "line": v.line,
        })).collect::<Vec<_>>()}),
    }
}
