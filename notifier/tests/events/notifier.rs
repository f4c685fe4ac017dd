//! The notifier as its users see it: what it writes for which event, and who
//! may read it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::helpers::{Backend, Options, TestBroker, eventually, id_of, spawn};

every_backend!(notifier_keeps_what_it_would_send_for_its_owner);

async fn notifier_keeps_what_it_would_send_for_its_owner(backend: Backend) {
    let Some(broker) = TestBroker::new().await else {
        return;
    };
    let mut options = Options::on(&broker, backend);
    options.notifier_queue = Some(broker.notifier_queue());
    let Some(app) = spawn(options).await else {
        return;
    };
    let seller = app.seller().await;
    let ann = app.customer().await;
    let bob = app.customer().await;
    let product = app.product(&seller, 1250, 10).await;

    // Registration: a welcome.
    assert!(
        eventually(Duration::from_secs(15), || async {
            app.notification_kinds(&ann).await == ["welcome"]
        })
        .await,
        "Ann is welcomed"
    );

    // An order through its whole life; paid and delivered are not announced.
    let first = id_of(&app.order(0, &ann, product, 2).await);
    for status in ["paid", "shipped", "delivered"] {
        app.move_order(0, first, status).await;
    }
    // Another, cancelled.
    let second = id_of(&app.order(0, &ann, product, 1).await);
    app.cancel(&ann, second).await;

    let expected = [
        "order_cancelled",
        "order_placed",
        "order_shipped",
        "order_placed",
        "welcome",
    ];
    assert!(
        eventually(Duration::from_secs(15), || async {
            app.notification_kinds(&ann).await.len() >= expected.len()
        })
        .await,
        "every notification arrives"
    );
    assert_eq!(app.notification_kinds(&ann).await, expected, "newest first");

    let reply = app.notifications(Some(&ann.token), "limit=2").await;
    reply.expect(200);
    let page = reply.body["items"].as_array().unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0]["subject"], format!("orders/{second}"));
    assert!(
        page[0]["title"].as_str().unwrap().contains("cancelled"),
        "{}",
        page[0]
    );
    assert!(
        page[1]["body"].as_str().unwrap().contains("12.50 USD"),
        "the placed note names the total: {}",
        page[1]
    );
    let cursor = reply.body["next_cursor"].as_str().expect("a next page");
    let rest = app
        .notifications(Some(&ann.token), &format!("cursor={cursor}"))
        .await;
    rest.expect(200);
    assert_eq!(rest.body["items"].as_array().unwrap().len(), 3);
    assert_eq!(rest.body["items"][0]["subject"], format!("orders/{first}"));

    // Bob sees only his own; nobody reads without a token.
    assert_eq!(app.notification_kinds(&bob).await, ["welcome"]);
    let anonymous = app.notifications(None, "").await;
    anonymous.expect_problem(401, "unauthorized");
    let forged = app.notifications(Some("not-a-token"), "").await;
    forged.expect_problem(401, "unauthorized");

    let stats = &app.notifier().stats;
    assert_eq!(stats.duplicates.load(Ordering::SeqCst), 0);
    assert_eq!(stats.rejected.load(Ordering::SeqCst), 0);

    let url = app.notifier_url.clone().unwrap();
    let ready = crate::helpers::send(app.client.get(format!("{url}/readyz"))).await;
    ready.expect(200);
    assert_eq!(
        ready.body["checks"]["broker"]["status"], "ok",
        "{}",
        ready.body
    );
    let health = crate::helpers::send(app.client.get(format!("{url}/healthz"))).await;
    health.expect(200);
    let metrics = app
        .client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("notifier_messages_total"), "{metrics}");
}
