//! Promotion codes: percent or fixed off, a minimum subtotal, buy X get Y,
//! validity dates and usage limits, each applying only when the shopper
//! entered its code. See README.md for the configuration.

use serde::Deserialize;
use shopeezy_plugin_sdk::prelude::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    codes: Vec<CodeConfig>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeConfig {
    code: String,
    /// Basis points off (1000 = 10 %).
    percent: Option<u32>,
    /// Minor units off the order.
    fixed: Option<Money>,
    /// Buy `buy` units, get `get` more free (the cheapest).
    buy: Option<u32>,
    get: Option<u32>,
    /// Which lines the code is about; every line when all are empty.
    sku: Option<String>,
    #[serde(default)]
    skus: Vec<String>,
    tag: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    /// The cart's subtotal must reach this (minor units).
    min_subtotal: Option<Money>,
    /// Only a customer's first order.
    #[serde(default)]
    first_order_only: bool,
    /// `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM:SSZ`, UTC; from inclusive, until exclusive.
    valid_from: Option<String>,
    valid_until: Option<String>,
    limit: Option<LimitConfig>,
    /// What the shopper sees instead of the default label.
    label: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitConfig {
    /// The usage counter; defaults to the code.
    key: Option<String>,
    total: Option<u32>,
    per_customer: Option<u32>,
}

/// What a code gives, once its configuration has been checked.
enum Offer {
    Percent(u32),
    Fixed(Money),
    BuyGet { buy: u32, get: u32 },
}

struct Code {
    code: String,
    offer: Offer,
    skus: Vec<String>,
    tags: Vec<String>,
    min_subtotal: Money,
    first_order_only: bool,
    window: (i64, i64),
    limit: Option<UsageLimit>,
    label: String,
}

impl Code {
    fn parse(c: CodeConfig, currency: &str) -> Result<Code, String> {
        let code = c.code.trim().to_uppercase();
        let bad = |why: &str| Err(format!("invalid config: code {code:?}: {why}"));
        if code.is_empty() {
            return bad("the code is empty");
        }
        let offer = match (c.percent, c.fixed, c.buy, c.get) {
            (Some(bps), None, None, None) if (1..=BPS_PER_WHOLE).contains(&bps) => {
                Offer::Percent(bps)
            }
            (None, Some(amount), None, None) if amount > 0 => Offer::Fixed(amount),
            (None, None, Some(buy), Some(get)) if buy > 0 && get > 0 => Offer::BuyGet { buy, get },
            _ => {
                return bad(
                    "give one of percent (1-10000 bps), fixed (> 0) or buy and get (each > 0)",
                );
            }
        };
        let time = |text: Option<String>, default: i64| match text {
            None => Ok(default),
            Some(t) => utc_ms(&t).ok_or_else(|| {
                format!("invalid config: code {code:?}: {t:?} is not YYYY-MM-DD[THH:MM:SSZ]")
            }),
        };
        let window = (
            time(c.valid_from, i64::MIN)?,
            time(c.valid_until, i64::MAX)?,
        );
        let label = c.label.unwrap_or_else(|| match &offer {
            Offer::Percent(bps) => format!("{code}: {} off", format_percent(*bps)),
            Offer::Fixed(amount) => format!("{code}: {} off", format_money(*amount, currency)),
            Offer::BuyGet { buy, get } => format!("{code}: buy {buy}, get {get} free"),
        });
        let limit = c.limit.map(|l| UsageLimit {
            key: l.key.unwrap_or_else(|| code.clone()),
            total: l.total,
            per_customer: l.per_customer,
        });
        Ok(Code {
            offer,
            skus: c.skus.into_iter().chain(c.sku).collect(),
            tags: c.tags.into_iter().chain(c.tag).collect(),
            min_subtotal: c.min_subtotal.unwrap_or(0),
            first_order_only: c.first_order_only,
            window,
            limit,
            label,
            code,
        })
    }

    /// Why the code does not apply to this cart, if it does not.
    fn unmet(&self, cart: &Cart, cart_subtotal: Money) -> Option<String> {
        if !(self.window.0..self.window.1).contains(&cart.now_ms) {
            Some("outside its dates".into())
        } else if self.first_order_only && cart.customer.order_count > 0 {
            Some("first orders only".into())
        } else if cart_subtotal < self.min_subtotal {
            Some(format!(
                "subtotal {cart_subtotal} is below {}",
                self.min_subtotal
            ))
        } else if !cart.lines.iter().any(|l| self.selects(l)) {
            Some("no line it applies to".into())
        } else {
            None
        }
    }

    fn selects(&self, line: &Line) -> bool {
        line_matches(line, &self.skus, &self.tags)
    }

    fn filtered(&self) -> bool {
        !self.skus.is_empty() || !self.tags.is_empty()
    }

    /// `discount`, tied to this code and counted against its limit.
    fn tag(&self, discount: Discount) -> Discount {
        let discount = discount.with_code(&self.code);
        match &self.limit {
            Some(limit) => discount.with_limit(limit.clone()),
            None => discount,
        }
    }

    fn on_line(&self, line: usize, amount: Amount) -> Discount {
        self.tag(Discount::line(line, amount, &self.label))
    }

    fn on_order(&self, amount: Amount) -> Discount {
        self.tag(Discount::order(amount, &self.label))
    }
}

struct PromoCodes;

impl PromotionPlugin for PromoCodes {
    fn discounts(cart: Cart) -> Result<Vec<Discount>, String> {
        let config: Config = config(&cart)?;
        let mut codes = Vec::with_capacity(config.codes.len());
        for c in config.codes {
            let code = Code::parse(c, &cart.currency)?;
            if codes.iter().any(|known: &Code| known.code == code.code) {
                return Err(format!(
                    "invalid config: code {:?} is listed twice",
                    code.code
                ));
            }
            codes.push(code);
        }

        let cart_subtotal = subtotal(&cart);
        // What is left of the order after this plugin's discounts so far: a
        // fixed order discount may not take more than that.
        let mut left = cart_subtotal;
        let mut discounts = Vec::new();
        let mut applied: Vec<&str> = Vec::new();
        for entered in &cart.codes {
            let Some(code) = codes.iter().find(|c| c.code.eq_ignore_ascii_case(entered)) else {
                continue;
            };
            if applied.contains(&code.code.as_str()) {
                continue;
            }
            applied.push(&code.code);
            if let Some(why) = code.unmet(&cart, cart_subtotal) {
                log::info(&format!("{}: not applied, {why}", code.code));
                continue;
            }
            let selected = || {
                cart.lines
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| code.selects(l))
            };
            match code.offer {
                Offer::Percent(bps) if !code.filtered() => {
                    left = left.saturating_sub(percent_of(left, bps));
                    discounts.push(code.on_order(Amount::Percent(bps)));
                }
                Offer::Percent(bps) => {
                    for (index, line) in selected() {
                        left = left.saturating_sub(percent_of(line_total(line), bps));
                        discounts.push(code.on_line(index, Amount::Percent(bps)));
                    }
                }
                Offer::Fixed(amount) => {
                    let selected_total =
                        selected().fold(0, |sum: Money, (_, l)| sum.saturating_add(line_total(l)));
                    let amount = amount.min(selected_total).min(left);
                    if amount > 0 {
                        left = left.saturating_sub(amount);
                        discounts.push(code.on_order(Amount::Fixed(amount)));
                    }
                }
                Offer::BuyGet { buy, get } => {
                    let free = free_units(selected().collect(), buy, get);
                    if free.is_empty() {
                        let group = u64::from(buy) + u64::from(get);
                        log::info(&format!(
                            "{}: not applied, fewer than {group} units",
                            code.code
                        ));
                    }
                    for (index, amount) in free {
                        left = left.saturating_sub(amount);
                        discounts.push(code.on_line(index, Amount::Fixed(amount)));
                    }
                }
            }
        }
        Ok(discounts)
    }
}

/// For buy `buy` get `get` (both > 0): the value of the free units on each
/// line, by line index. Every full group of `buy + get` units earns `get`
/// free units, taken from the cheapest lines first.
fn free_units(mut lines: Vec<(usize, &Line)>, buy: u32, get: u32) -> Vec<(usize, Money)> {
    let units: u64 = lines.iter().map(|(_, l)| u64::from(l.quantity)).sum();
    let group = u64::from(buy) + u64::from(get);
    let mut free = units / group * u64::from(get);
    lines.sort_by_key(|(index, l)| (l.unit_price, *index));
    let mut result = Vec::new();
    for (index, line) in lines {
        if free == 0 {
            break;
        }
        let taken = free.min(u64::from(line.quantity));
        if line.unit_price > 0 {
            // `taken` is at most the line's quantity, a `u32`.
            let value = line.unit_price.saturating_mul(taken as Money);
            result.push((index, value));
        }
        free -= taken;
    }
    result.sort_unstable();
    result
}

export_promotion!(PromoCodes);

#[cfg(test)]
mod tests {
    use super::*;
    use shopeezy_plugin_sdk::testing::{cart, line};

    const CONFIG: &str = r#"{"codes":[
        {"code":"SAVE10","percent":1000,"min_subtotal":5000,"limit":{"total":100,"per_customer":1}},
        {"code":"FIVEOFF","fixed":500},
        {"code":"B2G1","buy":2,"get":1,"tag":"coffee"},
        {"code":"WELCOME","percent":1500,"first_order_only":true,"valid_from":"2025-01-01","valid_until":"2025-02-01T00:00:00Z"},
        {"code":"TEA20","percent":2000,"skus":["TEA"],"label":"20% off tea"}
    ]}"#;

    fn run(lines: Vec<Line>, codes: &[&str]) -> Vec<Discount> {
        let mut c = cart(lines, CONFIG);
        c.codes = codes.iter().map(|c| c.to_string()).collect();
        c.now_ms = utc_ms("2025-01-15").expect("date");
        PromoCodes::discounts(c).expect("discounts")
    }

    fn coffee(sku: &str, quantity: u32, unit_price: Money) -> Line {
        let mut l = line(sku, quantity, unit_price);
        l.tags = vec!["coffee".into()];
        l
    }

    #[test]
    fn nothing_without_an_entered_code() {
        assert!(run(vec![line("A", 10, 1000)], &[]).is_empty());
        assert!(run(vec![line("A", 10, 1000)], &["NOPE"]).is_empty());
    }

    #[test]
    fn percent_code_with_minimum_and_limit() {
        assert!(run(vec![line("A", 1, 4999)], &["SAVE10"]).is_empty());
        let discounts = run(vec![line("A", 1, 5000)], &["SAVE10"]);
        assert_eq!(discounts.len(), 1);
        let d = &discounts[0];
        assert_eq!((d.target, d.amount), (Target::Order, Amount::Percent(1000)));
        assert_eq!(d.label, "SAVE10: 10% off");
        assert_eq!(d.code.as_deref(), Some("SAVE10"));
        assert_eq!(
            d.limit,
            Some(UsageLimit {
                key: "SAVE10".into(),
                total: Some(100),
                per_customer: Some(1)
            })
        );
    }

    #[test]
    fn fixed_code_never_exceeds_the_cart() {
        let d = run(vec![line("A", 1, 2000)], &["FIVEOFF"]);
        assert_eq!(
            (d[0].target, d[0].amount),
            (Target::Order, Amount::Fixed(500))
        );
        assert_eq!(d[0].label, "FIVEOFF: 5.00 USD off");
        assert_eq!(d[0].limit, None);
        let d = run(vec![line("A", 1, 300)], &["FIVEOFF"]);
        assert_eq!(d[0].amount, Amount::Fixed(300));
    }

    #[test]
    fn buy_two_get_one_frees_the_cheapest_units() {
        // 5 coffee units: one group of 3 -> 1 free unit, the cheapest (line 2).
        let lines = vec![
            coffee("C1", 2, 1200),
            line("X", 9, 100),
            coffee("C2", 3, 900),
        ];
        let d = run(lines, &["B2G1"]);
        assert_eq!(d.len(), 1);
        assert_eq!(
            (d[0].target, d[0].amount),
            (Target::Line(2), Amount::Fixed(900))
        );
        assert_eq!(d[0].label, "B2G1: buy 2, get 1 free");
        // 7 coffee units: 2 free, both from the cheaper line 1, then 9 units: 3 free.
        let d = run(vec![coffee("C1", 3, 1200), coffee("C2", 4, 900)], &["b2g1"]);
        assert_eq!(
            (d[0].target, d[0].amount),
            (Target::Line(1), Amount::Fixed(1800))
        );
        let d = run(vec![coffee("C1", 5, 1200), coffee("C2", 4, 900)], &["B2G1"]);
        assert_eq!(
            d.iter().map(|d| (d.target, d.amount)).collect::<Vec<_>>(),
            vec![(Target::Line(1), Amount::Fixed(2700))]
        );
        let d = run(
            vec![
                coffee("C1", 6, 1200),
                coffee("C2", 2, 900),
                coffee("C3", 1, 1000),
            ],
            &["B2G1"],
        );
        assert_eq!(
            d.iter().map(|d| (d.target, d.amount)).collect::<Vec<_>>(),
            vec![
                (Target::Line(1), Amount::Fixed(1800)),
                (Target::Line(2), Amount::Fixed(1000))
            ]
        );
        assert!(run(vec![coffee("C1", 2, 1200)], &["B2G1"]).is_empty());
    }

    #[test]
    fn first_order_and_dates() {
        let d = run(vec![line("A", 1, 1000)], &["WELCOME"]);
        assert_eq!(d[0].amount, Amount::Percent(1500));
        let mut c = cart(vec![line("A", 1, 1000)], CONFIG);
        c.codes = vec!["WELCOME".into()];
        c.now_ms = utc_ms("2025-02-01").expect("date");
        assert!(
            PromoCodes::discounts(c.clone())
                .expect("discounts")
                .is_empty()
        );
        c.now_ms = utc_ms("2025-01-31T23:59:59Z").expect("date");
        c.customer.order_count = 1;
        assert!(PromoCodes::discounts(c).expect("discounts").is_empty());
    }

    #[test]
    fn a_filtered_percent_discounts_only_its_lines() {
        let d = run(
            vec![line("A", 1, 1000), line("TEA", 2, 500)],
            &["TEA20", "FIVEOFF"],
        );
        assert_eq!(
            d.iter()
                .map(|d| (d.target, d.amount, d.label.as_str()))
                .collect::<Vec<_>>(),
            vec![
                (Target::Line(1), Amount::Percent(2000), "20% off tea"),
                (Target::Order, Amount::Fixed(500), "FIVEOFF: 5.00 USD off"),
            ]
        );
    }

    #[test]
    fn a_code_entered_twice_applies_once_and_huge_groups_do_not_overflow() {
        assert_eq!(
            run(vec![line("A", 1, 2000)], &["FIVEOFF", "fiveoff"]).len(),
            1
        );
        let mut c = cart(
            vec![line("A", 10_000, 100)],
            r#"{"codes":[{"code":"BIG","buy":4294967295,"get":4294967295}]}"#,
        );
        c.codes = vec!["BIG".into()];
        assert!(PromoCodes::discounts(c).expect("discounts").is_empty());
    }

    #[test]
    fn a_bad_config_fails_with_the_reason() {
        let mut c = cart(
            vec![],
            r#"{"codes":[{"code":"X","percent":1000,"fixed":5}]}"#,
        );
        let err = PromoCodes::discounts(c.clone()).expect_err("invalid");
        assert!(err.contains("give one of"), "{err}");
        c.config = r#"{"codes":[{"code":"X","fixed":5},{"code":"x","fixed":6}]}"#.into();
        let err = PromoCodes::discounts(c).expect_err("invalid");
        assert!(err.contains("listed twice"), "{err}");
    }
}
