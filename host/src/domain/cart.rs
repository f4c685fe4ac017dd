//! A user's cart: its lines, joined to their products as they are now, and
//! its promotion codes.

use super::catalog::Product;

/// Most codes one cart may hold.
pub const MAX_CODES: i64 = 10;

/// A cart line joined to its product, as read now.
#[derive(Debug, Clone)]
pub struct Line {
    /// The product as it is now.
    pub product: Product,
    /// How many.
    pub quantity: i64,
}

/// A user's cart as it is now: its lines and codes.
#[derive(Debug, Clone, Default)]
pub struct Cart {
    /// The lines, in product-id order (the order in which checkout takes
    /// stock, so concurrent checkouts never deadlock).
    pub lines: Vec<Line>,
    /// The promotion codes entered.
    pub codes: Vec<String>,
}
