//! Volume (tiered) pricing: the more units of a product, the lower its unit
//! price. See README.md for the configuration.

use serde::Deserialize;
use shopeezy_plugin_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// Price breaks; the highest `min_quantity` reached applies.
    tiers: Vec<Tier>,
    /// Only these SKUs (and/or `tags`); every line when both are empty.
    #[serde(default)]
    skus: Vec<String>,
    #[serde(default)]
    tags: Vec<String>,
    /// Count the units of every selected line together (mix and match)
    /// instead of each line on its own.
    #[serde(default)]
    mix_and_match: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Tier {
    min_quantity: u32,
    /// Whole percent off the unit price, 0–100.
    percent_off: u32,
}

struct VolumePricing;

impl PricingPlugin for VolumePricing {
    fn price(cart: Cart) -> Result<Vec<PriceChange>, String> {
        let config: Config = config(&cart)?;
        if let Some(tier) = config
            .tiers
            .iter()
            .find(|t| t.percent_off > 100 || t.min_quantity == 0)
        {
            return Err(format!(
                "invalid config: a tier needs min_quantity >= 1 and percent_off 0-100 (got {} and {})",
                tier.min_quantity, tier.percent_off
            ));
        }
        let selected = |line: &Line| line_matches(line, &config.skus, &config.tags);
        let pooled: u32 = cart
            .lines
            .iter()
            .filter(|l| selected(l))
            .map(|l| l.quantity)
            .sum();

        let mut changes = Vec::new();
        for (index, line) in cart.lines.iter().enumerate() {
            if !selected(line) {
                continue;
            }
            let units = if config.mix_and_match {
                pooled
            } else {
                line.quantity
            };
            let Some(tier) = config
                .tiers
                .iter()
                .filter(|t| t.min_quantity <= units)
                .max_by_key(|t| t.min_quantity)
            else {
                continue;
            };
            let unit_price = percent_off(line.unit_price, tier.percent_off * 100);
            if unit_price != line.unit_price {
                changes.push(PriceChange::new(index, unit_price));
            }
        }
        if !changes.is_empty() {
            log::info(&format!("volume prices on {} line(s)", changes.len()));
        }
        Ok(changes)
    }
}

export_pricing!(VolumePricing);

#[cfg(test)]
mod tests {
    use super::*;
    use shopeezy_plugin_sdk::testing::{cart, line};

    const TIERS: &str =
        r#""tiers":[{"min_quantity":10,"percent_off":5},{"min_quantity":50,"percent_off":12}]"#;

    fn price(lines: Vec<Line>, config: &str) -> Result<Vec<PriceChange>, String> {
        VolumePricing::price(cart(lines, config))
    }

    #[test]
    fn the_highest_tier_reached_applies() {
        let lines = vec![line("A", 9, 1000), line("B", 10, 1000), line("C", 60, 1999)];
        let changes = price(lines, &format!("{{{TIERS}}}")).expect("priced");
        assert_eq!(
            changes,
            vec![
                PriceChange {
                    line: 1,
                    unit_price: 950
                },
                PriceChange {
                    line: 2,
                    unit_price: 1760
                }, // 1999 - 239.88 (239) -> 1760
            ]
        );
    }

    #[test]
    fn only_selected_lines_when_skus_or_tags_are_given() {
        let mut tagged = line("T", 10, 1000);
        tagged.tags = vec!["bulk".into()];
        let lines = vec![line("A", 10, 1000), line("S", 10, 1000), tagged];
        let config = format!(r#"{{{TIERS},"skus":["S"],"tags":["bulk"]}}"#);
        let changes = price(lines, &config).expect("priced");
        assert_eq!(
            changes.iter().map(|c| c.line).collect::<Vec<_>>(),
            vec![1, 2]
        );
    }

    #[test]
    fn mix_and_match_pools_the_units() {
        let lines = vec![line("A", 6, 1000), line("B", 4, 500)];
        let config = format!(r#"{{{TIERS},"mix_and_match":true}}"#);
        let changes = price(lines, &config).expect("priced");
        assert_eq!(
            changes,
            vec![
                PriceChange {
                    line: 0,
                    unit_price: 950
                },
                PriceChange {
                    line: 1,
                    unit_price: 475
                }
            ]
        );
    }

    #[test]
    fn a_bad_config_fails_with_the_reason() {
        let err = price(
            vec![],
            r#"{"tiers":[{"min_quantity":1,"percent_off":150}]}"#,
        )
        .expect_err("invalid");
        assert!(err.contains("percent_off 0-100"), "{err}");
        let err = price(vec![], r#"{"tier":[]}"#).expect_err("invalid");
        assert!(err.starts_with("invalid config"), "{err}");
    }
}
