//! The pricing pipeline: catalog prices → pricing hooks → promotion hooks →
//! validation hooks. The cart view and checkout both call [`Pipeline::price`]
//! on a snapshot of the cart, so what a shopper sees is what checkout charges.
//!
//! The hooks are where merchant plugins plug in; without plugins the pipeline
//! prices every line at its catalog price.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::auth::Role;
use crate::error::{Error, Result};
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
    /// `applied`, or `skipped` when it failed under the `open` policy.
    pub outcome: String,
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
#[derive(Debug, Clone, Default)]
pub struct Pipeline {}

/// The currency of an empty cart.
pub const DEFAULT_CURRENCY: &str = "USD";

impl Pipeline {
    /// Prices `cart` for `customer` at `now`.
    pub fn price(
        &self,
        cart: &Cart,
        _customer: &Customer,
        _now: DateTime<Utc>,
    ) -> Result<PricedCart> {
        let currency = cart
            .lines
            .first()
            .map_or(DEFAULT_CURRENCY, |l| l.product.currency.as_str())
            .to_owned();
        let mut violations = Vec::new();
        let mut items = Vec::with_capacity(cart.lines.len());
        for line in &cart.lines {
            let p = &line.product;
            if p.currency != currency {
                violations.push(Violation {
                    code: "currency_mismatch".into(),
                    message: format!(
                        "{} is priced in {}, the cart in {currency}",
                        p.name, p.currency
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
        totals(
            items,
            cart.codes.clone(),
            Vec::new(),
            currency,
            violations,
            Vec::new(),
        )
    }
}

fn overflow() -> Error {
    Error::invalid("cart", "amounts too large to add up")
}

fn checked_line_total(unit_price: i64, quantity: i64) -> Result<i64> {
    unit_price.checked_mul(quantity).ok_or_else(overflow)
}

/// Adds up a priced cart; every sum is checked.
fn totals(
    items: Vec<PricedItem>,
    codes: Vec<String>,
    adjustments: Vec<Adjustment>,
    currency: String,
    violations: Vec<Violation>,
    plugins: Vec<PluginRun>,
) -> Result<PricedCart> {
    let mut subtotal: i64 = 0;
    let mut discount_total: i64 = 0;
    for item in &items {
        subtotal = subtotal
            .checked_add(checked_line_total(item.unit_price, item.quantity)?)
            .ok_or_else(overflow)?;
        for a in &item.adjustments {
            discount_total = discount_total.checked_sub(a.amount).ok_or_else(overflow)?;
        }
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
