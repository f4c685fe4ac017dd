//! Money, configuration and line helpers shared by every hook.

use serde::de::DeserializeOwned;

use crate::{Cart, Line, Money};

/// Basis points in a whole: 10,000 bps = 100 %, 1,000 bps = 10 %.
pub const BPS_PER_WHOLE: u32 = 10_000;

/// `bps` basis points of `amount`, in whole minor units, rounded towards
/// zero (floor for the usual non-negative amounts): 10 % of 1999 is 199
/// (199.9). That is how the host computes an `Amount::Percent` discount, so a
/// plugin's own arithmetic agrees with the cart. Basis points above 10,000
/// count as 10,000, so the share never exceeds the amount. Integer arithmetic
/// only, exact for every `i64`.
pub fn percent_of(amount: Money, bps: u32) -> Money {
    let share = i128::from(amount) * i128::from(bps.min(BPS_PER_WHOLE)) / i128::from(BPS_PER_WHOLE);
    // |share| <= |amount|, so it fits.
    Money::try_from(share).unwrap_or(amount)
}

/// `amount` less `bps` basis points of it (see [`percent_of`]: a fraction of
/// a minor unit stays with the price, 10 % off 1999 is 1800). Never below
/// zero for a non-negative amount.
pub fn percent_off(amount: Money, bps: u32) -> Money {
    amount - percent_of(amount, bps)
}

/// A line's total: unit price times quantity (saturating, never wrapping).
pub fn line_total(line: &Line) -> Money {
    line.unit_price.saturating_mul(Money::from(line.quantity))
}

/// The sum of every line's total, before any discount (saturating).
pub fn subtotal(cart: &Cart) -> Money {
    cart.lines
        .iter()
        .fold(0, |sum: Money, line| sum.saturating_add(line_total(line)))
}

/// Parses the merchant's configuration of this plugin (`cart.config`, JSON)
/// into `T`. An empty text counts as `{}`. The error names what is wrong,
/// ready to return from the hook.
pub fn config<T: DeserializeOwned>(cart: &Cart) -> Result<T, String> {
    let text = cart.config.trim();
    let text = if text.is_empty() { "{}" } else { text };
    serde_json::from_str(text).map_err(|e| format!("invalid config: {e}"))
}

/// The value of a product attribute on a line, e.g.
/// `attribute(line, "sale_percent") == Some("10")`.
pub fn attribute<'a>(line: &'a Line, key: &str) -> Option<&'a str> {
    line.attributes
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Whether a line's product carries `tag` (tags compare case-insensitively).
pub fn has_tag(line: &Line, tag: &str) -> bool {
    line.tags.iter().any(|t| t.eq_ignore_ascii_case(tag))
}

/// Whether a line's product carries any of `tags`.
pub fn has_any_tag(line: &Line, tags: &[String]) -> bool {
    tags.iter().any(|tag| has_tag(line, tag))
}

/// Whether a line is selected by a merchant's `skus` and `tags` lists: when
/// both are empty every line is; otherwise a line whose SKU is listed or
/// whose product carries one of the tags.
pub fn line_matches(line: &Line, skus: &[String], tags: &[String]) -> bool {
    (skus.is_empty() && tags.is_empty()) || skus.contains(&line.sku) || has_any_tag(line, tags)
}

/// An amount for people, e.g. `format_money(1999, "USD") == "19.99 USD"`,
/// with the currency's usual number of decimals (0 for JPY, 3 for KWD, …).
pub fn format_money(amount: Money, currency: &str) -> String {
    let decimals: u32 = match currency {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        _ => 2,
    };
    let sign = if amount < 0 { "-" } else { "" };
    let magnitude = amount.unsigned_abs();
    if decimals == 0 {
        return format!("{sign}{magnitude} {currency}");
    }
    let unit = 10u64.pow(decimals);
    let (whole, fraction) = (magnitude / unit, magnitude % unit);
    format!(
        "{sign}{whole}.{fraction:0width$} {currency}",
        width = decimals as usize
    )
}

/// Basis points for people: `format_percent(1000) == "10%"`,
/// `format_percent(1250) == "12.5%"`.
pub fn format_percent(bps: u32) -> String {
    let (whole, fraction) = (bps / 100, bps % 100);
    match fraction {
        0 => format!("{whole}%"),
        f if f % 10 == 0 => format!("{whole}.{}%", f / 10),
        f => format!("{whole}.{f:02}%"),
    }
}

/// Milliseconds since the Unix epoch of a UTC time written
/// `YYYY-MM-DDTHH:MM:SSZ` or `YYYY-MM-DD` (midnight), comparable with
/// `cart.now_ms`. `None` when the text is not one of those forms.
pub fn utc_ms(text: &str) -> Option<i64> {
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, time.strip_suffix('Z')?),
        None => (text, "00:00:00"),
    };
    let number = |part: Option<&str>, digits: usize| -> Option<i64> {
        let part = part?;
        if part.len() != digits || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let mut d = date.split('-');
    let (year, month, day) = (
        number(d.next(), 4)?,
        number(d.next(), 2)?,
        number(d.next(), 2)?,
    );
    let mut t = time.split(':');
    let (hour, minute, second) = (
        number(t.next(), 2)?,
        number(t.next(), 2)?,
        number(t.next(), 2)?,
    );
    if d.next().is_some() || t.next().is_some() {
        return None;
    }
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let valid = (1..=12).contains(&month)
        && (1..=month_days[(month - 1) as usize]).contains(&day)
        && hour < 24
        && minute < 60
        && second < 60;
    if !valid {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), exact for the
    // proleptic Gregorian calendar.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Customer;

    fn line(unit_price: Money, quantity: u32) -> Line {
        Line {
            product_id: "p".into(),
            sku: "SKU".into(),
            seller_id: "s".into(),
            quantity,
            unit_price,
            tags: vec!["coffee".into()],
            attributes: vec![("sale_percent".into(), "10".into())],
        }
    }

    fn cart(lines: Vec<Line>, config: &str) -> Cart {
        Cart {
            lines,
            customer: Customer {
                id: "u".into(),
                role: "customer".into(),
                order_count: 0,
            },
            codes: vec![],
            currency: "USD".into(),
            config: config.into(),
            now_ms: 0,
        }
    }

    #[test]
    fn percent_rounds_towards_zero() {
        assert_eq!(percent_of(1999, 1_000), 199); // 199.9
        assert_eq!(percent_of(1995, 1_000), 199); // 199.5
        assert_eq!(percent_of(2000, 1_000), 200);
        assert_eq!(percent_of(1999, 1), 0); // 0.1999
        assert_eq!(percent_of(1999, 0), 0);
        assert_eq!(percent_of(1999, 10_000), 1999);
        assert_eq!(percent_of(-1999, 1_000), -199);
    }

    #[test]
    fn percent_never_exceeds_the_amount() {
        assert_eq!(percent_of(1999, 50_000), 1999);
        assert_eq!(percent_of(i64::MAX, 10_000), i64::MAX);
        assert_eq!(percent_of(i64::MIN, 10_000), i64::MIN);
        assert_eq!(percent_of(i64::MAX, 9_999), 9_222_449_699_651_090_329);
        assert_eq!(percent_off(1999, 500), 1900); // 99.95 off rounds to 99
        assert_eq!(percent_off(1999, 1_000), 1800);
    }

    #[test]
    fn totals_saturate() {
        assert_eq!(line_total(&line(250, 4)), 1000);
        assert_eq!(line_total(&line(i64::MAX, 2)), i64::MAX);
        assert_eq!(
            subtotal(&cart(vec![line(250, 4), line(100, 1)], "{}")),
            1100
        );
    }

    #[test]
    fn config_parses_or_says_why() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Config {
            #[serde(default)]
            percent: u32,
        }
        assert_eq!(
            config::<Config>(&cart(vec![], "")),
            Ok(Config { percent: 0 })
        );
        assert_eq!(
            config::<Config>(&cart(vec![], r#"{"percent":5}"#)),
            Ok(Config { percent: 5 })
        );
        let err = config::<Config>(&cart(vec![], r#"{"percent":"x"}"#))
            .expect_err("a string is not a number");
        assert!(err.starts_with("invalid config: invalid type"), "{err}");
    }

    #[test]
    fn formats_for_people() {
        assert_eq!(format_money(1999, "USD"), "19.99 USD");
        assert_eq!(format_money(5, "EUR"), "0.05 EUR");
        assert_eq!(format_money(-500, "USD"), "-5.00 USD");
        assert_eq!(format_money(1200, "JPY"), "1200 JPY");
        assert_eq!(format_money(1234, "KWD"), "1.234 KWD");
        assert_eq!(format_percent(1000), "10%");
        assert_eq!(format_percent(1250), "12.5%");
        assert_eq!(format_percent(1), "0.01%");
        assert_eq!(format_percent(10_000), "100%");
    }

    #[test]
    fn parses_utc_times() {
        assert_eq!(utc_ms("1970-01-01"), Some(0));
        assert_eq!(utc_ms("2000-03-01T00:00:01Z"), Some(951_868_801_000));
        assert_eq!(utc_ms("2024-02-29T23:59:59Z"), Some(1_709_251_199_000));
        assert_eq!(utc_ms("2023-02-29"), None);
        assert_eq!(utc_ms("2024-01-01T00:00:00"), None);
        assert_eq!(utc_ms("2024-1-01"), None);
        assert_eq!(utc_ms("2024-01-01T24:00:00Z"), None);
    }

    #[test]
    fn line_lookups() {
        let l = line(100, 1);
        assert_eq!(attribute(&l, "sale_percent"), Some("10"));
        assert_eq!(attribute(&l, "missing"), None);
        assert!(has_tag(&l, "Coffee"));
        assert!(!has_tag(&l, "tea"));
        assert!(has_any_tag(&l, &["tea".into(), "coffee".into()]));
        assert!(!has_any_tag(&l, &[]));
        assert!(line_matches(&l, &[], &[]));
        assert!(line_matches(&l, &["SKU".into()], &[]));
        assert!(line_matches(&l, &["OTHER".into()], &["coffee".into()]));
        assert!(!line_matches(&l, &["OTHER".into()], &["tea".into()]));
    }
}
