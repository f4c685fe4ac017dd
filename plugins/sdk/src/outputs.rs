//! Short constructors for what the hooks return.

use crate::{Amount, Discount, Money, PriceChange, Target, UsageLimit, Violation};

/// A line index from `enumerate()` as the WIT's `u32`. Carts hold at most a
/// few thousand lines; an impossible index saturates, and the host then
/// refuses it as out of range.
fn index(line: usize) -> u32 {
    u32::try_from(line).unwrap_or(u32::MAX)
}

impl PriceChange {
    /// Line `line`'s new unit price.
    pub fn new(line: usize, unit_price: Money) -> Self {
        PriceChange {
            line: index(line),
            unit_price,
        }
    }
}

impl Discount {
    /// A discount on line `line`, with no code and no usage limit.
    pub fn line(line: usize, amount: Amount, label: impl Into<String>) -> Self {
        Discount {
            target: Target::Line(index(line)),
            amount,
            label: label.into(),
            code: None,
            limit: None,
        }
    }

    /// A discount on the whole order, with no code and no usage limit.
    pub fn order(amount: Amount, label: impl Into<String>) -> Self {
        Discount {
            target: Target::Order,
            amount,
            label: label.into(),
            code: None,
            limit: None,
        }
    }

    /// The same discount, tied to the entered code `code`.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// The same discount, counted against `limit`.
    pub fn with_limit(mut self, limit: UsageLimit) -> Self {
        self.limit = Some(limit);
        self
    }
}

impl Violation {
    /// A violation of the whole cart; `code` is stable snake_case, `message`
    /// is for the shopper.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Violation {
            code: code.into(),
            message: message.into(),
            line: None,
        }
    }

    /// The same violation, about line `line`.
    pub fn on_line(mut self, line: usize) -> Self {
        self.line = Some(index(line));
        self
    }
}
