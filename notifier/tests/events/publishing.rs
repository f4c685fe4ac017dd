//! What goes on the broker: exactly one CloudEvents message per committed
//! change, with the right routing key, properties and document; nothing for
//! a change that failed.

use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::helpers::{Backend, Message, Options, TestBroker, eventually, id_of, spawn};

every_backend!(
    status_changes_publish_one_cloudevent_each,
    user_registered_is_published_by_the_account_service,
);

/// Asserts everything a consumer relies on in one event message.
#[track_caller]
fn assert_cloudevent(m: &Message, routing_key: &str, source: &str, subject: &str) {
    let event_type = format!("shopeezy.{routing_key}");
    assert_eq!(m.routing_key, routing_key);
    let p = &m.properties;
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/cloudevents+json")
    );
    assert_eq!(*p.delivery_mode(), Some(2), "persistent");
    assert_eq!(
        p.kind().as_ref().map(|s| s.as_str()),
        Some(event_type.as_str())
    );
    let timestamp = p.timestamp().expect("a timestamp") as i64;
    assert!(
        (Utc::now().timestamp() - timestamp).abs() < 120,
        "timestamp {timestamp}"
    );
    let body = &m.body;
    assert_eq!(body["specversion"], "1.0");
    assert_eq!(body["type"], event_type.as_str());
    assert_eq!(body["source"], source);
    assert_eq!(body["subject"], subject);
    assert_eq!(body["datacontenttype"], "application/json");
    let id = body["id"].as_str().expect("an id");
    Uuid::parse_str(id).expect("the id is a UUID");
    assert_eq!(m.message_id(), id, "message_id = the event id");
    body["time"]
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .expect("an RFC 3339 time");
}

async fn status_changes_publish_one_cloudevent_each(backend: Backend) {
    let Some(broker) = TestBroker::new().await else {
        return;
    };
    let mut queue = broker.queue(&["order.*"]).await;
    let Some(app) = spawn(Options::on(&broker, backend)).await else {
        return;
    };
    let seller = app.seller().await;
    let shopper = app.customer().await;
    let product = app.product(&seller, 1250, 5).await;

    // Two checkouts that fail: an empty cart, then a cart the stock cannot fill.
    app.checkout(0, &shopper)
        .await
        .expect_problem(422, "cart_empty");
    app.put_item(0, &shopper, product, 3).await;
    app.set_stock(&seller, product, 1).await;
    app.checkout(0, &shopper)
        .await
        .expect_problem(409, "out_of_stock");
    assert!(
        queue.quiet(Duration::from_millis(400)).await.is_empty(),
        "a failed checkout publishes nothing"
    );
    app.set_stock(&seller, product, 5).await;

    // An order through its whole life, and one that is cancelled.
    let first = app.order(0, &shopper, product, 2).await;
    let first_id = id_of(&first);
    for status in ["paid", "shipped", "delivered"] {
        app.move_order(0, first_id, status).await;
    }
    let second = app.order(0, &shopper, product, 1).await;
    let second_id = id_of(&second);
    app.cancel(&shopper, second_id).await;

    let got = queue.take(6, Duration::from_secs(20)).await;
    let expected = [
        (first_id, "order.placed", "placed"),
        (first_id, "order.paid", "paid"),
        (first_id, "order.shipped", "shipped"),
        (first_id, "order.delivered", "delivered"),
        (second_id, "order.placed", "placed"),
        (second_id, "order.cancelled", "cancelled"),
    ];
    assert_eq!(
        got.len(),
        expected.len(),
        "keys: {:?}",
        got.iter().map(|m| &m.routing_key).collect::<Vec<_>>()
    );
    for (m, (order_id, key, status)) in got.iter().zip(expected) {
        assert_cloudevent(m, key, "/shopeezy/host", &format!("orders/{order_id}"));
        let data = &m.body["data"];
        assert_eq!(data["id"], order_id.to_string());
        assert_eq!(data["status"], status);
        assert_eq!(data["user_id"], shopper.id.to_string());
        assert_eq!(data["currency"], "USD");
        let order = if order_id == first_id {
            &first
        } else {
            &second
        };
        assert_eq!(data["total"], order["total"]);
        assert_eq!(data["items"], order["items"]);
    }
    // The message is the outbox's document, id for id.
    let ids: Vec<String> = got.iter().map(Message::message_id).collect();
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "six distinct event ids");
    assert_eq!(app.host_count("SELECT COUNT(*) FROM outbox").await, 6);

    assert!(
        queue.quiet(Duration::from_millis(500)).await.is_empty(),
        "nothing more"
    );
    assert!(
        eventually(Duration::from_secs(5), || async { app.unsent().await == 0 }).await,
        "every row is marked sent after its confirm"
    );
}

async fn user_registered_is_published_by_the_account_service(backend: Backend) {
    let Some(broker) = TestBroker::new().await else {
        return;
    };
    let mut queue = broker.queue(&["user.registered"]).await;
    let Some(app) = spawn(Options::on(&broker, backend)).await else {
        return;
    };
    let username = format!("ann-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let email = format!("{username}@example.com");
    let user = app.register(&username, &email).await;
    user.expect(201);
    let user_id = user.id();
    // The same email again is refused, and announces nothing.
    app.register(&format!("{username}x"), &email)
        .await
        .expect_problem(409, "email_taken");

    let subject = format!("users/{user_id}");
    let got = queue
        .take_until(Duration::from_secs(20), |got| {
            got.iter().any(|m| m.body["subject"] == subject.as_str())
        })
        .await;
    let mine: Vec<&Message> = got
        .iter()
        .filter(|m| m.body["subject"] == subject.as_str())
        .collect();
    assert_eq!(mine.len(), 1, "one user.registered for the new user");
    let m = mine[0];
    assert_cloudevent(m, "user.registered", "/shopeezy/account", &subject);
    assert_eq!(m.body["data"]["user_id"], user_id.to_string());
    assert_eq!(m.body["data"]["email"], email.as_str());
    assert_eq!(m.body["data"]["username"], username.as_str());
    assert_eq!(m.body["data"]["role"], "customer");

    let more = queue.quiet(Duration::from_millis(500)).await;
    assert!(
        more.iter()
            .all(|m| m.body["data"]["email"] != email.as_str()),
        "the refused registration published nothing"
    );
}

/// Without `SHOPEEZY_AMQP_URL` the same relay drains the outbox to
/// in-process subscribers (and the log); no broker involved.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn embedded_relay_feeds_in_process_subscribers() {
    let app = spawn(Options::default()).await.unwrap();
    let mut events = app.host_relays[0].subscribe();
    let seller = app.seller().await;
    let shopper = app.customer().await;
    let product = app.product(&seller, 500, 3).await;
    let order = app.order(0, &shopper, product, 1).await;
    let order_id = id_of(&order);

    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .unwrap();
    assert_eq!(event.routing_key, "order.placed");
    assert_eq!(event.subject, format!("orders/{order_id}"));
    assert_eq!(event.document["id"], event.id.to_string());
    assert_eq!(event.document["data"]["id"], order_id.to_string());
    assert!(
        eventually(Duration::from_secs(5), || async { app.unsent().await == 0 }).await,
        "marked sent"
    );
    // Embedded mode has no broker to report.
    let ready = app.host_readyz(0).await;
    ready.expect(200);
    assert!(
        ready.body["checks"].get("broker").is_none(),
        "{}",
        ready.body
    );
}

/// Sent rows are deleted once older than the retention (0 hours here).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sent_events_are_pruned_after_the_retention() {
    let app = spawn(Options {
        retention_hours: 0,
        ..Options::default()
    })
    .await
    .unwrap();
    let mut events = app.host_relays[0].subscribe();
    let seller = app.seller().await;
    let shopper = app.customer().await;
    let product = app.product(&seller, 500, 3).await;
    app.order(0, &shopper, product, 1).await;
    let event = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(event.routing_key, "order.placed");
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.host_count("SELECT COUNT(*) FROM outbox").await == 0
        })
        .await,
        "the sent row is pruned"
    );
}
