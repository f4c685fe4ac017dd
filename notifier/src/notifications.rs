//! What a shopper is told about an event: a pure function from a CloudEvents
//! document to the notifications it calls for.
//!
//! Sent: a welcome on `user.registered`; a note when an order is placed,
//! shipped or cancelled. `order.paid` and `order.delivered` are handled (and
//! remembered as processed) without a notification: payment happens as part
//! of placing an order, and the shopper is the one who sees the parcel arrive.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use uuid::Uuid;

/// A CloudEvents 1.0 document as the services publish it.
#[derive(Debug, Clone, Deserialize)]
pub struct CloudEvent {
    /// Must be `1.0`.
    pub specversion: String,
    /// The event's id: what makes a redelivery recognisable.
    pub id: Uuid,
    /// Who emitted it, e.g. `/shopeezy/host`.
    pub source: String,
    /// E.g. `shopeezy.order.placed`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// What it is about, e.g. `orders/<id>`.
    #[serde(default)]
    pub subject: Option<String>,
    /// When it happened.
    #[serde(default)]
    pub time: Option<DateTime<Utc>>,
    /// The payload.
    #[serde(default)]
    pub data: Value,
}

/// A message that can never be handled, however often it is retried.
#[derive(Debug, thiserror::Error)]
#[error("malformed event: {0}")]
pub struct Malformed(pub String);

impl CloudEvent {
    /// Parses a message body.
    pub fn parse(body: &[u8]) -> Result<Self, Malformed> {
        let event: Self = serde_json::from_slice(body)
            .map_err(|e| Malformed(format!("not a CloudEvent: {e}")))?;
        if event.specversion != "1.0" {
            return Err(Malformed(format!(
                "unsupported specversion {:?}",
                event.specversion
            )));
        }
        Ok(event)
    }
}

/// The kinds of notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// After registration.
    Welcome,
    /// An order was placed.
    OrderPlaced,
    /// An order left the warehouse.
    OrderShipped,
    /// An order was cancelled.
    OrderCancelled,
}

impl Kind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Welcome => "welcome",
            Self::OrderPlaced => "order_placed",
            Self::OrderShipped => "order_shipped",
            Self::OrderCancelled => "order_cancelled",
        }
    }
}

/// A notification to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// Whom it is for.
    pub user_id: Uuid,
    /// What kind it is.
    pub kind: Kind,
    /// The event's subject, e.g. `orders/<id>`.
    pub subject: String,
    /// One line.
    pub title: String,
    /// The text.
    pub body: String,
}

/// The notifications `event` calls for (none for a type the notifier does
/// not announce).
pub fn drafts(event: &CloudEvent) -> Result<Vec<Draft>, Malformed> {
    let subject = event.subject.clone().unwrap_or_default();
    let draft = match event.event_type.as_str() {
        "shopeezy.user.registered" => {
            let user: Registered = data(event)?;
            Draft {
                user_id: user.user_id,
                kind: Kind::Welcome,
                subject,
                title: "Welcome to Shopeezy".into(),
                body: format!(
                    "Hello {}, your account {} is ready. We will write to {}.",
                    user.name, user.username, user.email
                ),
            }
        }
        "shopeezy.order.placed" => {
            let order: OrderData = data(event)?;
            Draft {
                user_id: order.user_id,
                kind: Kind::OrderPlaced,
                subject,
                title: format!("Order {} placed", short(order.id)),
                body: format!(
                    "Thank you for your order of {} item(s), {} in total. We will tell you when it ships.",
                    order.quantity(),
                    money(order.total, &order.currency)
                ),
            }
        }
        "shopeezy.order.shipped" => {
            let order: OrderData = data(event)?;
            Draft {
                user_id: order.user_id,
                kind: Kind::OrderShipped,
                subject,
                title: format!("Order {} shipped", short(order.id)),
                body: format!("Your order of {} item(s) is on its way.", order.quantity()),
            }
        }
        "shopeezy.order.cancelled" => {
            let order: OrderData = data(event)?;
            Draft {
                user_id: order.user_id,
                kind: Kind::OrderCancelled,
                subject,
                title: format!("Order {} cancelled", short(order.id)),
                body: format!(
                    "Your order was cancelled; {} will not be charged or will be refunded.",
                    money(order.total, &order.currency)
                ),
            }
        }
        _ => return Ok(Vec::new()),
    };
    Ok(vec![draft])
}

#[derive(Deserialize)]
struct Registered {
    user_id: Uuid,
    name: String,
    username: String,
    email: String,
}

#[derive(Deserialize)]
struct OrderData {
    id: Uuid,
    user_id: Uuid,
    total: i64,
    currency: String,
    #[serde(default)]
    items: Vec<Line>,
}

#[derive(Deserialize)]
struct Line {
    quantity: i64,
}

impl OrderData {
    fn quantity(&self) -> i64 {
        self.items.iter().map(|l| l.quantity).sum()
    }
}

fn data<T: for<'de> Deserialize<'de>>(event: &CloudEvent) -> Result<T, Malformed> {
    serde_json::from_value(event.data.clone()).map_err(|e| {
        Malformed(format!(
            "{} without the expected data: {e}",
            event.event_type
        ))
    })
}

/// The first block of an id, as people quote it.
fn short(id: Uuid) -> String {
    id.simple().to_string()[..8].to_owned()
}

/// An amount in minor units, e.g. `12.50 USD`.
fn money(minor: i64, currency: &str) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let minor = minor.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", minor / 100, minor % 100)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn event(event_type: &str, data: Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "specversion": "1.0",
            "id": Uuid::now_v7(),
            "source": "/test",
            "type": event_type,
            "subject": "orders/x",
            "time": Utc::now(),
            "data": data,
        }))
        .unwrap()
    }

    #[test]
    fn an_order_placed_is_announced_with_its_total() {
        let user = Uuid::now_v7();
        let body = event(
            "shopeezy.order.placed",
            serde_json::json!({"id": Uuid::now_v7(), "user_id": user, "total": 1250, "currency": "USD",
                               "items": [{"quantity": 2}, {"quantity": 1}]}),
        );
        let drafts = drafts(&CloudEvent::parse(&body).unwrap()).unwrap();
        assert_eq!(drafts.len(), 1);
        assert_eq!(drafts[0].user_id, user);
        assert_eq!(drafts[0].kind, Kind::OrderPlaced);
        assert!(
            drafts[0].body.contains("3 item(s), 12.50 USD"),
            "{}",
            drafts[0].body
        );
    }

    #[test]
    fn paid_and_delivered_call_for_nothing() {
        for t in [
            "shopeezy.order.paid",
            "shopeezy.order.delivered",
            "shopeezy.other",
        ] {
            let body = event(t, serde_json::json!({}));
            assert!(
                drafts(&CloudEvent::parse(&body).unwrap())
                    .unwrap()
                    .is_empty()
            );
        }
    }

    #[test]
    fn garbage_and_incomplete_events_are_malformed() {
        assert!(CloudEvent::parse(b"{not json").is_err());
        assert!(CloudEvent::parse(br#"{"specversion":"0.3","id":"x"}"#).is_err());
        let body = event("shopeezy.order.placed", serde_json::json!({"id": "nope"}));
        assert!(drafts(&CloudEvent::parse(&body).unwrap()).is_err());
    }
}
