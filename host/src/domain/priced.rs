//! A priced cart — what the cart view shows and what checkout charges — and
//! the checked arithmetic that adds it up.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

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

/// Adds up a priced cart; every sum is checked.
pub fn totals(
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

/// A line's total: its price times its quantity, plus its adjustments.
pub fn line_total(item: &PricedItem) -> Result<i64> {
    let mut total = checked_line_total(item.unit_price, item.quantity)?;
    for a in &item.adjustments {
        total = total.checked_add(a.amount).ok_or_else(overflow)?;
    }
    Ok(total.max(0))
}

/// `unit_price × quantity`, checked.
pub fn checked_line_total(unit_price: i64, quantity: i64) -> Result<i64> {
    unit_price.checked_mul(quantity).ok_or_else(overflow)
}

/// A cart whose amounts do not fit in an `i64`: the shopper's cart, 422.
pub fn overflow() -> Error {
    Error::invalid("cart", "amounts too large to add up")
}
