//! Purchase limits: at most so many units per product and per order, and no
//! products with a blocked tag. See README.md for the configuration.

use std::collections::BTreeMap;

use serde::Deserialize;
use shopeezy_plugin_sdk::prelude::*;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// Most units of any one product.
    max_per_product: Option<u32>,
    /// Most units of these SKUs, overriding `max_per_product`.
    max_per_sku: BTreeMap<String, u32>,
    /// Most units in the whole order (of the lines this plugin sees).
    max_per_order: Option<u32>,
    /// Products carrying any of these tags cannot be bought.
    blocked_tags: Vec<String>,
}

struct PurchaseLimits;

impl ValidationPlugin for PurchaseLimits {
    fn validate(cart: Cart) -> Result<Vec<Violation>, String> {
        let config: Config = config(&cart)?;
        let mut violations = Vec::new();
        for (index, line) in cart.lines.iter().enumerate() {
            if let Some(tag) = config.blocked_tags.iter().find(|tag| has_tag(line, tag)) {
                violations.push(
                    Violation::new(
                        "blocked_product",
                        format!("{} cannot be bought here ({tag})", line.sku),
                    )
                    .on_line(index),
                );
            }
            let max = config
                .max_per_sku
                .get(&line.sku)
                .copied()
                .or(config.max_per_product);
            if let Some(max) = max.filter(|max| line.quantity > *max) {
                violations.push(
                    Violation::new(
                        "max_quantity_per_product",
                        format!(
                            "At most {max} of {} per order; the cart has {}",
                            line.sku, line.quantity
                        ),
                    )
                    .on_line(index),
                );
            }
        }
        let units: u64 = cart.lines.iter().map(|l| u64::from(l.quantity)).sum();
        if let Some(max) = config.max_per_order.filter(|max| units > u64::from(*max)) {
            violations.push(Violation::new(
                "max_units_per_order",
                format!("At most {max} items per order; the cart has {units}"),
            ));
        }
        Ok(violations)
    }
}

export_validation!(PurchaseLimits);

#[cfg(test)]
mod tests {
    use super::*;
    use shopeezy_plugin_sdk::testing::{cart, line};

    fn codes(violations: &[Violation]) -> Vec<(&str, Option<u32>)> {
        violations
            .iter()
            .map(|v| (v.code.as_str(), v.line))
            .collect()
    }

    #[test]
    fn an_empty_config_allows_everything() {
        let violations =
            PurchaseLimits::validate(cart(vec![line("A", 10_000, 1)], "{}")).expect("validated");
        assert!(violations.is_empty());
    }

    #[test]
    fn finds_every_limit_broken() {
        let mut restricted = line("R", 1, 100);
        restricted.tags = vec!["restricted".into()];
        let lines = vec![
            line("A", 6, 100),
            line("B", 5, 100),
            line("C", 3, 100),
            restricted,
            line("D", 8, 100),
        ];
        let config = r#"{"max_per_product":5,"max_per_sku":{"C":2,"D":10},"max_per_order":20,"blocked_tags":["restricted"]}"#;
        let violations = PurchaseLimits::validate(cart(lines, config)).expect("validated");
        assert_eq!(
            codes(&violations),
            vec![
                ("max_quantity_per_product", Some(0)),
                ("max_quantity_per_product", Some(2)),
                ("blocked_product", Some(3)),
                ("max_units_per_order", None),
            ]
        );
        assert_eq!(
            violations[0].message,
            "At most 5 of A per order; the cart has 6"
        );
        assert_eq!(
            violations[3].message,
            "At most 20 items per order; the cart has 23"
        );
    }

    #[test]
    fn rejects_an_unknown_setting() {
        let err = PurchaseLimits::validate(cart(vec![], r#"{"max_per_products":5}"#))
            .expect_err("invalid");
        assert!(err.contains("unknown field"), "{err}");
    }
}
