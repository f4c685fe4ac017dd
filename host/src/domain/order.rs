//! Orders and their life: `placed → paid → shipped → delivered`, and
//! `placed | paid → cancelled`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shopeezy_common::outbox::Event;
use uuid::Uuid;

use super::priced::{Adjustment, PluginRun, PricedItem};
use crate::error::{Error, Result};

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Checked out, not yet paid.
    Placed,
    /// Paid.
    Paid,
    /// Handed to the carrier.
    Shipped,
    /// Received.
    Delivered,
    /// Cancelled; its stock went back.
    Cancelled,
}

impl Status {
    /// The status' name as stored and sent.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Placed => "placed",
            Self::Paid => "paid",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }

    /// The status of a stored name.
    pub fn parse(raw: &str) -> Result<Self> {
        serde_json::from_value(serde_json::Value::String(raw.to_owned()))
            .map_err(|_| Error::Internal(anyhow::anyhow!("stored order status {raw:?} is unknown")))
    }

    /// Whether an order may move from `self` to `next`:
    /// `placed → paid → shipped → delivered`, and `placed | paid → cancelled`.
    pub fn may_become(self, next: Self) -> bool {
        matches!(
            (self, next),
            (Self::Placed, Self::Paid)
                | (Self::Paid, Self::Shipped)
                | (Self::Shipped, Self::Delivered)
                | (Self::Placed | Self::Paid, Self::Cancelled)
        )
    }
}

/// An order as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Order {
    /// The order's id.
    pub id: Uuid,
    /// Who placed it.
    pub user_id: Uuid,
    /// Where it is in its life.
    pub status: Status,
    /// The lines, with prices as charged.
    pub items: Vec<PricedItem>,
    /// Adjustments on the whole order.
    pub adjustments: Vec<Adjustment>,
    /// Sum of `unit_price × quantity`.
    pub subtotal: i64,
    /// Sum of every discount.
    pub discount_total: i64,
    /// What was charged.
    pub total: i64,
    /// ISO 4217 code of every amount.
    pub currency: String,
    /// The plugins that priced it.
    pub plugins: Vec<PluginRun>,
    /// When it was placed (UTC).
    pub created_at: DateTime<Utc>,
    /// When it last changed (UTC).
    pub updated_at: DateTime<Utc>,
}

impl Order {
    /// The event announcing that the order is now in its status.
    pub fn status_event(&self) -> Event {
        let routing_key = format!("order.{}", self.status.as_str());
        Event::new(
            "/shopeezy/host",
            &routing_key,
            format!("orders/{}", self.id),
            self,
        )
    }
}
