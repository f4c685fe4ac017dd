//! The catalog: products, new ones, and changes to them.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

/// A product as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Product {
    /// The product's id.
    pub id: Uuid,
    /// The seller it belongs to.
    pub seller_id: Uuid,
    /// Stock-keeping unit, unique per seller.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Unit price in minor units of `currency`.
    pub price: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Units available.
    pub stock: i64,
    /// Lower-case tags.
    pub tags: Vec<String>,
    /// Free-form string attributes that plugins can read.
    pub attributes: BTreeMap<String, String>,
    /// When it was listed (UTC).
    pub created_at: DateTime<Utc>,
    /// When it last changed (UTC).
    pub updated_at: DateTime<Utc>,
}

/// A validated new product.
#[derive(Debug)]
pub struct NewProduct {
    /// Owner.
    pub seller_id: Uuid,
    /// SKU.
    pub sku: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Price in minor units.
    pub price: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// Initial stock.
    pub stock: i64,
    /// Tags.
    pub tags: Vec<String>,
    /// Attributes.
    pub attributes: BTreeMap<String, String>,
}

/// Validated changes to a product; `None` keeps a field.
#[derive(Debug, Default)]
pub struct Changes {
    /// New SKU.
    pub sku: Option<String>,
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New price.
    pub price: Option<i64>,
    /// New currency.
    pub currency: Option<String>,
    /// New tags (replacing the old ones).
    pub tags: Option<Vec<String>>,
    /// New attributes (replacing the old ones).
    pub attributes: Option<BTreeMap<String, String>>,
    /// New stock level.
    pub stock: Option<i64>,
}
