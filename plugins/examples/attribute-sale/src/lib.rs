//! A sale from a product attribute: a product with `sale_percent = "10"`
//! gets 10 % off its line. See README.md for the configuration.

use serde::Deserialize;
use shopeezy_plugin_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Config {
    /// The attribute holding the whole percent off (1–100).
    attribute: String,
    /// The shopper's label; `{percent}` becomes the percentage.
    label: String,
    /// The largest percent honoured; higher values are capped to it.
    max_percent: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            attribute: "sale_percent".into(),
            label: "Sale {percent}%".into(),
            max_percent: 100,
        }
    }
}

struct AttributeSale;

impl PromotionPlugin for AttributeSale {
    fn discounts(cart: Cart) -> Result<Vec<Discount>, String> {
        let config: Config = config(&cart)?;
        if !(1..=100).contains(&config.max_percent) {
            return Err(format!(
                "invalid config: max_percent must be 1-100, not {}",
                config.max_percent
            ));
        }
        let mut discounts = Vec::new();
        for (index, line) in cart.lines.iter().enumerate() {
            let Some(value) = attribute(line, &config.attribute) else {
                continue;
            };
            // A seller's typo must not break checkout: skip the line and say why.
            let percent = match value.trim().parse::<u32>() {
                Ok(p @ 1..=100) => p.min(config.max_percent),
                _ => {
                    log::warn(&format!(
                        "{}: {} = {value:?} is not a whole percent 1-100",
                        line.sku, config.attribute
                    ));
                    continue;
                }
            };
            let label = config.label.replace("{percent}", &percent.to_string());
            discounts.push(Discount::line(index, Amount::Percent(percent * 100), label));
        }
        Ok(discounts)
    }
}

export_promotion!(AttributeSale);

#[cfg(test)]
mod tests {
    use super::*;
    use shopeezy_plugin_sdk::testing::{cart, line};

    fn on_sale(sku: &str, value: &str) -> Line {
        let mut l = line(sku, 1, 1000);
        l.attributes = vec![("sale_percent".into(), value.into())];
        l
    }

    #[test]
    fn discounts_lines_with_the_attribute() {
        let lines = vec![line("A", 1, 1000), on_sale("B", "10"), on_sale("C", " 25 ")];
        let discounts = AttributeSale::discounts(cart(lines, "{}")).expect("discounts");
        assert_eq!(discounts.len(), 2);
        assert_eq!(discounts[0].target, Target::Line(1));
        assert_eq!(discounts[0].amount, Amount::Percent(1000));
        assert_eq!(discounts[0].label, "Sale 10%");
        assert_eq!(discounts[1].amount, Amount::Percent(2500));
    }

    #[test]
    fn skips_bad_values_and_caps_to_the_maximum() {
        let lines = vec![
            on_sale("A", "0"),
            on_sale("B", "abc"),
            on_sale("C", "101"),
            on_sale("D", "90"),
        ];
        let config = r#"{"max_percent":50,"label":"Clearance -{percent}%"}"#;
        let discounts = AttributeSale::discounts(cart(lines, config)).expect("discounts");
        assert_eq!(discounts.len(), 1);
        assert_eq!(discounts[0].target, Target::Line(3));
        assert_eq!(discounts[0].amount, Amount::Percent(5000));
        assert_eq!(discounts[0].label, "Clearance -50%");
    }

    #[test]
    fn reads_another_attribute_when_configured() {
        let mut l = line("A", 1, 1000);
        l.attributes = vec![("promo".into(), "15".into())];
        let discounts =
            AttributeSale::discounts(cart(vec![l], r#"{"attribute":"promo"}"#)).expect("discounts");
        assert_eq!(discounts[0].amount, Amount::Percent(1500));
    }
}
