//! The transactional outbox: an event is a row written in the same
//! transaction as the change it describes, so it exists if and only if that
//! change committed. A relay sends the rows afterwards.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use sqlx::types::Json;
use uuid::Uuid;

/// A CloudEvents 1.0 event, ready to be written to the outbox.
#[derive(Debug, Clone)]
pub struct Event {
    /// The event's id (also the AMQP `message_id`).
    pub id: Uuid,
    /// The routing key, e.g. `order.placed`.
    pub routing_key: String,
    /// The CloudEvents type, e.g. `shopeezy.order.placed`.
    pub event_type: String,
    /// What the event is about, e.g. `orders/<id>`.
    pub subject: String,
    /// When it happened.
    pub time: DateTime<Utc>,
    /// The whole CloudEvents JSON document.
    pub document: Value,
}

impl Event {
    /// An event from `source` (e.g. `/shopeezy/host`) with routing key
    /// `routing_key`, about `subject`, carrying `data`.
    pub fn new(source: &str, routing_key: &str, subject: String, data: impl Serialize) -> Self {
        let id = Uuid::now_v7();
        let time = Utc::now();
        let event_type = format!("shopeezy.{routing_key}");
        let document = serde_json::json!({
            "specversion": "1.0",
            "id": id,
            "source": source,
            "type": event_type,
            "subject": subject,
            "time": time,
            "datacontenttype": "application/json",
            "data": data,
        });
        Self {
            id,
            routing_key: routing_key.to_owned(),
            event_type,
            subject,
            time,
            document,
        }
    }
}

/// The statement that writes an [`Event`]; bind it with [`insert_event!`](crate::insert_event).
pub const INSERT_SQL: &str =
    "INSERT INTO outbox (id, routing_key, event_type, subject, payload, created_at)
     VALUES ($1, $2, $3, $4, $5, $6)";

/// Writes an [`Event`] to the outbox with the executor `$tx` (a transaction
/// of any backend); evaluates to `Result<_, sqlx::Error>`.
#[macro_export]
macro_rules! insert_event {
    ($tx:expr, $event:expr) => {{
        let event: &$crate::outbox::Event = $event;
        let sql = $crate::sql!($tx, $crate::outbox::INSERT_SQL);
        sqlx::query(sql)
            .bind(event.id)
            .bind(event.routing_key.as_str())
            .bind(event.event_type.as_str())
            .bind(event.subject.as_str())
            .bind($crate::outbox::json(&event.document))
            .bind(event.time)
            .execute($tx)
            .await
    }};
}

/// A JSON value as a bindable parameter.
pub fn json(value: &Value) -> Json<&Value> {
    Json(value)
}
