//! Test only (promotion): returns an invalid discount chosen by config `{"kind": …}`: "percent" (150 %, the default), "line" (twice line 0's total), "order" (twice the subtotal), "index" (a line out of range), "negative" (a negative fixed amount) or "label" (a valid 1 % discount with a 1 MiB label).

use serde::Deserialize;
use shopeezy_plugin_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    kind: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            kind: "percent".into(),
        }
    }
}

struct InvalidDiscount;

impl PromotionPlugin for InvalidDiscount {
    fn discounts(cart: Cart) -> Result<Vec<Discount>, String> {
        let config: Config = config(&cart)?;
        let first_line_total = cart.lines.first().map_or(0, line_total);
        let (target, amount) = match config.kind.as_str() {
            "percent" => (Target::Order, Amount::Percent(15_000)),
            "line" => (Target::Line(0), Amount::Fixed(first_line_total * 2 + 1)),
            "order" => (Target::Order, Amount::Fixed(subtotal(&cart) * 2 + 1)),
            "index" => (Target::Line(cart.lines.len() as u32), Amount::Fixed(1)),
            "negative" => (Target::Order, Amount::Fixed(-100)),
            "label" => (Target::Order, Amount::Percent(100)),
            other => return Err(format!("unknown kind {other:?}")),
        };
        let label = match config.kind.as_str() {
            "label" => "x".repeat(1 << 20),
            kind => format!("invalid discount ({kind})"),
        };
        Ok(vec![Discount {
            target,
            amount,
            label,
            code: None,
            limit: None,
        }])
    }
}

export_promotion!(InvalidDiscount);
