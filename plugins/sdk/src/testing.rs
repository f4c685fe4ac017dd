//! Builders for a plugin's native unit tests (`cargo test` on the host
//! target): the hook functions are plain Rust, so a test calls them with a
//! cart built here and checks what they return.

use crate::{Cart, Customer, Line, Money};

/// A line of `quantity` units of `sku` at `unit_price`, with product id
/// `product-<sku>`, seller `seller-1`, no tags and no attributes.
pub fn line(sku: &str, quantity: u32, unit_price: Money) -> Line {
    Line {
        product_id: format!("product-{sku}"),
        sku: sku.to_string(),
        seller_id: "seller-1".to_string(),
        quantity,
        unit_price,
        tags: Vec::new(),
        attributes: Vec::new(),
    }
}

/// A USD cart of `lines` with merchant configuration `config`, bought by a
/// customer (`customer-1`) with no earlier orders, no codes, at time 0.
pub fn cart(lines: Vec<Line>, config: &str) -> Cart {
    Cart {
        lines,
        customer: Customer {
            id: "customer-1".to_string(),
            role: "customer".to_string(),
            order_count: 0,
        },
        codes: Vec::new(),
        currency: "USD".to_string(),
        config: config.to_string(),
        now_ms: 0,
    }
}
