//! The types every layer shares: who is calling, the catalog and carts,
//! priced carts and orders, plugins, and the validated values they are
//! built from (parse, don't validate).
//!
//! The bottom layer: it imports nothing from the crate but the error type.

pub mod cart;
pub mod catalog;
pub mod identity;
pub mod order;
pub mod plugin;
pub mod priced;
pub mod values;

pub use cart::{Cart, Line, MAX_CODES};
pub use catalog::{Changes, NewProduct, Product};
pub use identity::{Caller, Role};
pub use order::{Order, Status};
pub use plugin::{FailurePolicy, Hook, MAX_CONFIG_BYTES, NewPlugin, Plugin, Scope, Settings};
pub use priced::{Adjustment, Claim, PluginRun, PricedCart, PricedItem, Violation};
pub use values::{
    MAX_PRICE, MAX_QUANTITY, MAX_STOCK, Quantity, parse_attributes, parse_code, parse_currency,
    parse_price, parse_sku, parse_stock, parse_tags, parse_text,
};
