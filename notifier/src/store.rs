//! The notifier's store: processed event ids and the notifications, written
//! together so that an event is acted on exactly once however often it is
//! delivered.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shopeezy_common::db::{Db, unique_violation};
use shopeezy_common::sql;
use shopeezy_common::{with_db, with_tx};
use uuid::Uuid;

use crate::notifications::{CloudEvent, Draft};

/// What recording an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// First time seen: this many notifications written.
    New(usize),
    /// Already processed earlier: nothing written.
    Duplicate,
}

/// Marks `event` processed and writes its notifications, in one
/// transaction; an event id seen before writes nothing.
pub async fn record(
    db: &Db,
    event: &CloudEvent,
    drafts: &[Draft],
) -> Result<Recorded, sqlx::Error> {
    let now = shopeezy_common::db::now();
    with_tx!(db, tx => {
        // MySQL has no DO NOTHING that says whether it did nothing: its
        // plain INSERT fails on the key instead, which counts as a duplicate
        // (and leaves the transaction open).
        let fresh = match sqlx::query(
            sql!(tx, "INSERT INTO processed_events (event_id, event_type, processed_at) VALUES ($1, $2, $3)
             ON CONFLICT (event_id) DO NOTHING",
                 mysql: "INSERT INTO processed_events (event_id, event_type, processed_at) VALUES (?, ?, ?)"),
        )
        .bind(event.id)
        .bind(&event.event_type)
        .bind(now)
        .execute(&mut *tx)
        .await
        {
            Ok(done) => done.rows_affected(),
            Err(e) if unique_violation(&e).is_some() => 0,
            Err(e) => return Err(e),
        };
        if fresh == 0 {
            tx.rollback().await?;
            return Ok(Recorded::Duplicate);
        }
        for draft in drafts {
            sqlx::query(
                sql!(tx, "INSERT INTO notifications (id, user_id, kind, event_id, subject, title, body, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
            )
            .bind(Uuid::now_v7())
            .bind(draft.user_id)
            .bind(draft.kind.as_str())
            .bind(event.id)
            .bind(&draft.subject)
            .bind(&draft.title)
            .bind(&draft.body)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
    });
    Ok(Recorded::New(drafts.len()))
}

/// A notification the notifier would have sent.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Notification {
    /// Its id.
    pub id: Uuid,
    /// `welcome`, `order_placed`, `order_shipped` or `order_cancelled`.
    pub kind: String,
    /// What it is about, e.g. `orders/<id>`.
    pub subject: String,
    /// One line.
    pub title: String,
    /// The text.
    pub body: String,
    /// The CloudEvents id of the event that caused it.
    pub event_id: Uuid,
    /// When it was written (UTC).
    pub created_at: DateTime<Utc>,
}

/// Up to `limit` notifications of `user_id` after `after`, newest first.
pub async fn list(
    db: &Db,
    user_id: Uuid,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Notification>, sqlx::Error> {
    const SQL: &str =
        "SELECT id, kind, subject, title, body, event_id, created_at FROM notifications
               WHERE user_id = $1 AND ($2 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4";
    Ok(with_db!(db, pool => sqlx::query_as(sql!(pool, SQL))
        .bind(user_id)
        .bind(after)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?))
}

/// Whether the event with this id was processed.
pub async fn processed(db: &Db, event_id: Uuid) -> Result<bool, sqlx::Error> {
    const SQL: &str = "SELECT COUNT(*) FROM processed_events WHERE event_id = $1";
    let n: i64 = with_db!(db, pool => sqlx::query_scalar(sql!(pool, SQL)).bind(event_id).fetch_one(pool).await?);
    Ok(n > 0)
}
