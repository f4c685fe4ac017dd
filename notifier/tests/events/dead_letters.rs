//! Messages the notifier cannot handle end in its dead-letter queue: a
//! malformed one at once, one whose handling keeps failing after the
//! queue's delivery limit. Neither blocks the messages behind it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use lapin::types::AMQPValue;
use serde_json::json;
use shopeezy_common::with_db;
use uuid::Uuid;

use crate::helpers::{Options, TestBroker, eventually, spawn};

fn order_placed(user_id: Uuid) -> (Uuid, Vec<u8>) {
    let id = Uuid::now_v7();
    let order_id = Uuid::now_v7();
    let body = json!({
        "specversion": "1.0",
        "id": id,
        "source": "/test",
        "type": "shopeezy.order.placed",
        "subject": format!("orders/{order_id}"),
        "time": chrono::Utc::now(),
        "datacontenttype": "application/json",
        "data": {"id": order_id, "user_id": user_id, "status": "placed", "total": 100,
                 "currency": "USD", "items": [{"quantity": 1}]},
    });
    (id, serde_json::to_vec(&body).unwrap())
}

/// The `x-death` reason of a dead-lettered message.
fn death_reason(m: &crate::helpers::Message) -> String {
    let headers = m.properties.headers().clone().unwrap_or_default();
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death header: {headers:?}");
    };
    match deaths.as_slice().first() {
        Some(AMQPValue::FieldTable(t)) => match t.inner().get("reason") {
            Some(AMQPValue::LongString(r)) => r.to_string(),
            other => panic!("no reason: {other:?}"),
        },
        other => panic!("an empty x-death: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unhandleable_messages_are_dead_lettered() {
    let Some(broker) = TestBroker::new().await else {
        return;
    };
    let queue = broker.notifier_queue();
    let dead = format!("{queue}.dead");
    let limit = 2;
    let mut options = Options::on(&broker, crate::helpers::Backend::Embedded);
    options.notifier_queue = Some(queue.clone());
    options.delivery_limit = limit;
    let Some(app) = spawn(options).await else {
        return;
    };
    let notifier = app.notifier();
    let stats = notifier.stats.clone();
    let db = notifier.db.clone();
    let user = Uuid::now_v7();

    // Not JSON: rejected at once, straight to the dead letters.
    broker
        .publish_raw("order.placed", b"{not json", "garbage-1")
        .await;
    let m = broker
        .get_within(&dead, Duration::from_secs(10))
        .await
        .expect("the malformed message is dead-lettered");
    assert_eq!(m.message_id(), "garbage-1");
    assert_eq!(m.raw, b"{not json");
    assert_eq!(death_reason(&m), "rejected");
    assert_eq!(stats.rejected.load(Ordering::SeqCst), 1);

    // The store fails for every notification (a trigger aborts the insert):
    // retried until the delivery limit, then dead-lettered, and nothing of
    // it is recorded.
    with_db!(&db, pool => sqlx::query(
        "CREATE TRIGGER refuse_notifications BEFORE INSERT ON notifications
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END",
    )
    .execute(pool)
    .await
    .map(|_| ())
    .unwrap());
    let (failing_id, body) = order_placed(user);
    broker
        .publish_raw("order.placed", &body, &failing_id.to_string())
        .await;
    let m = broker
        .get_within(&dead, Duration::from_secs(20))
        .await
        .expect("the failing message is dead-lettered");
    assert_eq!(m.message_id(), failing_id.to_string());
    assert_eq!(death_reason(&m), "delivery_limit");
    let retried = stats.retried.load(Ordering::SeqCst);
    // RabbitMQ counts redeliveries: the first delivery plus `limit` more.
    assert_eq!(
        retried,
        u64::from(limit) + 1,
        "tries before dead-lettering (x-delivery-limit {limit})"
    );
    assert!(
        !shopeezy_notifier::store::processed(&db, failing_id)
            .await
            .unwrap()
    );

    // The store works again: the next event is handled as usual.
    with_db!(&db, pool => sqlx::query("DROP TRIGGER refuse_notifications").execute(pool).await.map(|_| ()).unwrap());
    let (good_id, body) = order_placed(user);
    broker
        .publish_raw("order.placed", &body, &good_id.to_string())
        .await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            shopeezy_notifier::store::processed(&db, good_id)
                .await
                .unwrap()
        })
        .await,
        "handled once the store works"
    );
    assert!(broker.get(&dead).await.is_none(), "nothing else dead");
    eprintln!(
        "dead letters: a failing message was tried {retried} times (x-delivery-limit {limit})"
    );
}
