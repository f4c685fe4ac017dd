//! Validated values of the catalog and carts: built by a `parse` that can
//! fail, so use cases and the store never see an invalid one.

use std::collections::BTreeMap;

use crate::error::{Error, Result};

/// The largest quantity of one product in a cart.
pub const MAX_QUANTITY: i64 = 10_000;
/// The largest stock level of a product.
pub const MAX_STOCK: i64 = 1_000_000_000;
/// The largest price, in minor units (one billion major units).
pub const MAX_PRICE: i64 = 100_000_000_000;

/// A quantity of a cart line: 1 to [`MAX_QUANTITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantity(i64);

impl Quantity {
    /// Checks a requested quantity (0 is "remove", handled by the caller).
    pub fn parse(raw: i64) -> Result<Self> {
        if !(1..=MAX_QUANTITY).contains(&raw) {
            return Err(Error::invalid(
                "quantity",
                format!("must be between 0 and {MAX_QUANTITY}"),
            ));
        }
        Ok(Self(raw))
    }

    /// The number.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A stock level: 0 to [`MAX_STOCK`].
pub fn parse_stock(raw: i64) -> Result<i64> {
    if !(0..=MAX_STOCK).contains(&raw) {
        return Err(Error::invalid(
            "stock",
            format!("must be between 0 and {MAX_STOCK}"),
        ));
    }
    Ok(raw)
}

/// A price in minor units: 0 to [`MAX_PRICE`].
pub fn parse_price(raw: i64) -> Result<i64> {
    if !(0..=MAX_PRICE).contains(&raw) {
        return Err(Error::invalid(
            "price",
            format!("must be an integer of minor units between 0 and {MAX_PRICE}"),
        ));
    }
    Ok(raw)
}

/// An active ISO 4217 currency code with minor units, such as `USD` or
/// `JPY` (from the `iso_currency` crate's table). Codes without minor units
/// (gold `XAU`, the test code `XTS`, "no currency" `XXX`) are refused:
/// every amount here is an integer of minor units.
pub fn parse_currency(raw: &str) -> Result<String> {
    match iso_currency::Currency::from_code(raw) {
        Some(currency) if currency.exponent().is_some() => Ok(currency.code().to_owned()),
        _ => Err(Error::invalid(
            "currency",
            "must be an ISO 4217 currency code such as USD",
        )),
    }
}

/// A SKU: 1–64 characters of letters, digits, `-`, `_`, `.`.
pub fn parse_sku(raw: &str) -> Result<String> {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    if raw.is_empty() || raw.len() > 64 || !raw.chars().all(ok) {
        return Err(Error::invalid(
            "sku",
            "must be 1 to 64 characters of letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(raw.to_owned())
}

/// A text field: trimmed, `min`–`max` characters, no control characters
/// (newlines allowed when `multiline`).
pub fn parse_text(
    field: &'static str,
    raw: &str,
    min: usize,
    max: usize,
    multiline: bool,
) -> Result<String> {
    let text = raw.trim();
    let len = text.chars().count();
    let bad_char = text
        .chars()
        .any(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\t' | '\r')));
    if len < min || len > max || bad_char {
        return Err(Error::invalid(
            field,
            format!("must be {min} to {max} characters without control characters"),
        ));
    }
    Ok(text.to_owned())
}

/// Tags: at most 20, each 1–32 characters of `a-z`, `0-9`, `-` (lower-cased,
/// duplicates dropped, sorted).
pub fn parse_tags(raw: &[String]) -> Result<Vec<String>> {
    if raw.len() > 20 {
        return Err(Error::invalid("tags", "may hold at most 20 tags"));
    }
    let mut tags = Vec::with_capacity(raw.len());
    for tag in raw {
        let tag = tag.trim().to_lowercase();
        let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if tag.is_empty() || tag.len() > 32 || !tag.chars().all(ok) {
            return Err(Error::invalid(
                "tags",
                "each tag must be 1 to 32 characters of a-z, 0-9 or '-'",
            ));
        }
        tags.push(tag);
    }
    tags.sort();
    tags.dedup();
    Ok(tags)
}

/// Attributes: at most 50 entries, keys 1–64 characters of `a-z`, `0-9`,
/// `_`, `-`, `.`, values up to 512 characters.
pub fn parse_attributes(raw: &BTreeMap<String, String>) -> Result<BTreeMap<String, String>> {
    if raw.len() > 50 {
        return Err(Error::invalid("attributes", "may hold at most 50 entries"));
    }
    let key_ok = |k: &str| {
        !k.is_empty()
            && k.len() <= 64
            && k.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
            })
    };
    for (key, value) in raw {
        if !key_ok(key) {
            return Err(Error::invalid(
                "attributes",
                "keys must be 1 to 64 characters of a-z, 0-9, '_', '-' or '.'",
            ));
        }
        if value.chars().count() > 512 {
            return Err(Error::invalid(
                "attributes",
                "values must be at most 512 characters",
            ));
        }
    }
    Ok(raw.clone())
}

/// A promotion code: 1–64 characters of letters, digits, `-`, `_`, stored
/// upper-cased (codes are case-insensitive).
pub fn parse_code(raw: &str) -> Result<String> {
    let code = raw.trim().to_uppercase();
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_');
    if code.is_empty() || code.len() > 64 || !code.chars().all(ok) {
        return Err(Error::invalid(
            "code",
            "must be 1 to 64 characters of letters, digits, '-' or '_'",
        ));
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_have_bounds() {
        for bad in [
            -1,
            0,
            MAX_QUANTITY + 1,
            i64::from(i32::MAX) + 1,
            i64::MAX,
            i64::MIN,
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Quantity::parse(3).map(Quantity::get).ok(), Some(3));
    }

    #[test]
    fn tags_are_normalised() {
        let tags = parse_tags(&["Shoes".into(), "sale".into(), "shoes".into()]).ok();
        assert_eq!(tags, Some(vec!["sale".to_owned(), "shoes".to_owned()]));
        assert!(parse_tags(&["no spaces".into()]).is_err());
    }

    #[test]
    fn money_and_codes() {
        assert!(parse_price(-1).is_err());
        assert!(parse_currency("usd").is_err());
        assert!(parse_currency("ZZZ").is_err());
        assert!(parse_currency("XXX").is_err());
        assert_eq!(parse_currency("JPY").ok().as_deref(), Some("JPY"));
        assert_eq!(parse_code(" save10 ").ok().as_deref(), Some("SAVE10"));
    }
}
