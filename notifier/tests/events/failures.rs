//! Failures the outbox must survive: the broker unreachable mid-stream, a
//! relay that dies between publishing and marking sent, two relays racing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use shopeezy_common::events::Faults;
use uuid::Uuid;

use crate::helpers::{
    Backend, Message, Options, TestBroker, broker_proxy, by_subject, eventually, id_of, spawn,
};

every_backend!(
    broker_outage_mid_stream_loses_no_event,
    relay_killed_after_publish_redelivers_and_the_notifier_acts_once,
    two_relays_deliver_everything_in_each_orders_order,
);

/// Checkouts in the outage test (`SHOPEEZY_TEST_OUTAGE_ORDERS`, default 500).
fn outage_orders() -> usize {
    std::env::var("SHOPEEZY_TEST_OUTAGE_ORDERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500)
}

async fn broker_outage_mid_stream_loses_no_event(backend: Backend) {
    let Some(broker) = TestBroker::new().await else {
        return;
    };
    let mut queue = broker.queue(&["order.placed"]).await;
    let (proxy, through_proxy) = broker_proxy(&broker).await;
    let mut options = Options::on(&broker, backend);
    options.host_amqp = Some(through_proxy);
    let Some(app) = spawn(options).await else {
        return;
    };
    let orders = outage_orders();
    let shoppers_n = 20;
    let seller = app.seller().await;
    let product = app.product(&seller, 300, 1_000_000).await;
    let shoppers = futures::stream::iter(0..shoppers_n)
        .map(|_| app.customer())
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;

    // The shoppers check out while the broker link is cut after the first
    // fifth and restored after three fifths.
    let done = Arc::new(AtomicUsize::new(0));
    let shopping = shoppers.iter().enumerate().map(|(i, shopper)| {
        let api = app.api.clone();
        let done = done.clone();
        let shopper = shopper.clone();
        let mine = orders / shoppers_n + usize::from(i < orders % shoppers_n);
        async move {
            let mut ids = Vec::with_capacity(mine);
            for _ in 0..mine {
                let order = api.order(0, &shopper, product, 1).await;
                ids.push(id_of(&order));
                done.fetch_add(1, Ordering::SeqCst);
            }
            ids
        }
    });
    let controller = {
        let done = done.clone();
        let proxy = proxy.clone();
        let api = app.api.clone();
        async move {
            while done.load(Ordering::SeqCst) < orders / 5 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            proxy.cut();
            let cut_at = tokio::time::Instant::now();
            // The host stays ready and says the broker is not. The link
            // stays cut until that was seen (at most 10 s), for at least a
            // second, and until three fifths of the checkouts are done.
            let mut seen_down = false;
            while !(seen_down && cut_at.elapsed() >= Duration::from_secs(1))
                || done.load(Ordering::SeqCst) < orders * 3 / 5
            {
                if !seen_down {
                    let ready = api.host_readyz(0).await;
                    ready.expect(200);
                    assert_eq!(ready.body["checks"]["broker"]["required"], false);
                    seen_down = ready.body["checks"]["broker"]["status"] == "unavailable";
                    if !seen_down && cut_at.elapsed() > Duration::from_secs(10) {
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            proxy.restore();
            seen_down
        }
    };
    let (ids, seen_down) = tokio::join!(futures::future::join_all(shopping), controller);
    let placed: HashSet<Uuid> = ids.into_iter().flatten().collect();
    assert_eq!(placed.len(), orders, "every checkout succeeded");
    assert!(seen_down, "/readyz reported the broker down during the cut");

    let got = queue
        .take_until(Duration::from_secs(60), |got| {
            got.iter()
                .map(Message::data_id)
                .collect::<HashSet<_>>()
                .len()
                >= orders
        })
        .await;
    let delivered: HashSet<Uuid> = got.iter().map(Message::data_id).collect();
    let missing = placed.difference(&delivered).count();
    assert_eq!(missing, 0, "{missing} of {orders} order.placed events lost");
    assert_eq!(delivered.len(), orders);
    // At least once: a batch whose confirms were cut off is sent again, so a
    // duplicate is allowed, but only with the same event id.
    let mut ids_per_order: HashMap<Uuid, HashSet<String>> = HashMap::new();
    for m in &got {
        ids_per_order
            .entry(m.data_id())
            .or_default()
            .insert(m.message_id());
    }
    assert!(ids_per_order.values().all(|ids| ids.len() == 1));
    eprintln!(
        "outage: {orders} orders, {} deliveries ({} duplicates)",
        got.len(),
        got.len() - orders
    );
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.unsent().await == 0
        })
        .await,
        "the backlog drains"
    );
    let ready = app.host_readyz(0).await;
    assert_eq!(
        ready.body["checks"]["broker"]["status"], "ok",
        "{}",
        ready.body
    );
    let metrics = app
        .client
        .get(format!("{}/metrics", app.host_urls[0]))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "outbox_backlog{service=\"host\"}",
        "outbox_oldest_unsent_seconds{service=\"host\"}",
        "outbox_published_total{service=\"host\"}",
        "outbox_publish_failures_total{service=\"host\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from /metrics");
    }
}

async fn relay_killed_after_publish_redelivers_and_the_notifier_acts_once(backend: Backend) {
    let Some(broker) = TestBroker::new().await else {
        return;
    };
    let mut queue = broker.queue(&["order.*"]).await;
    let mut options = Options::on(&broker, backend);
    options.account_amqp = None;
    options.host_faults = Faults {
        crash_after_publish: true,
    };
    options.notifier_queue = Some(broker.notifier_queue());
    let Some(mut app) = spawn(options).await else {
        return;
    };
    let seller = app.seller().await;
    let shopper = app.customer().await;
    let product = app.product(&seller, 700, 10).await;
    let order_id = id_of(&app.order(0, &shopper, product, 1).await);

    // The relay published and was confirmed, then died before marking the row.
    let first = queue
        .next(Duration::from_secs(15))
        .await
        .expect("published once");
    assert_eq!(first.routing_key, "order.placed");
    assert_eq!(first.data_id(), order_id);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.unsent().await, 1, "the row is still unsent");
    let stats = app.notifier().stats.clone();
    assert!(
        eventually(Duration::from_secs(10), || async {
            stats.handled.load(Ordering::SeqCst) >= 1
        })
        .await,
        "the notifier handled the first delivery"
    );

    // A fresh relay (a restarted replica) sends it again, with the same id.
    let settings = app.relay_settings.clone();
    let mut healthy = settings.clone();
    healthy.faults = Faults::default();
    app.start_relay(&healthy);
    let again = queue
        .next(Duration::from_secs(15))
        .await
        .expect("published again");
    assert_eq!(again.message_id(), first.message_id());
    assert_eq!(again.body, first.body, "the very same document");
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.unsent().await == 0
        })
        .await,
        "marked sent this time"
    );

    // The notifier saw it twice and acted once.
    assert!(
        eventually(Duration::from_secs(10), || async {
            stats.duplicates.load(Ordering::SeqCst) >= 1
        })
        .await,
        "the notifier saw the redelivery"
    );
    assert_eq!(stats.handled.load(Ordering::SeqCst), 1);
    let reply = app.notifications(Some(&shopper.token), "").await;
    reply.expect(200);
    let items = reply.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "one notification: {}", reply.body);
    assert_eq!(items[0]["kind"], "order_placed");
    assert_eq!(items[0]["event_id"], first.message_id());
    assert_eq!(items[0]["subject"], format!("orders/{order_id}"));
    assert!(queue.quiet(Duration::from_millis(300)).await.is_empty());
}

async fn two_relays_deliver_everything_in_each_orders_order(backend: Backend) {
    let Some(broker) = TestBroker::new().await else {
        return;
    };
    let mut queue = broker.queue(&["order.*"]).await;
    let (proxy, through_proxy) = broker_proxy(&broker).await;
    let mut options = Options::on(&broker, backend);
    options.host_amqp = Some(through_proxy);
    options.host_replicas = 2;
    let Some(app) = spawn(options).await else {
        return;
    };
    let seller = app.seller().await;
    let product = app.product(&seller, 300, 1_000_000).await;
    let shoppers = futures::stream::iter(0..8)
        .map(|_| app.customer())
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;

    // Each order moves through both replicas: placed on one, paid on the
    // other, shipped on the first. First with both relays live, then with
    // the broker cut so that a backlog builds up for both to drain at once.
    // One lane per shopper: a shopper's checkouts never overlap.
    let api = &app.api;
    let life = |round: usize| {
        let lanes = shoppers.iter().enumerate().map(move |(lane, shopper)| {
            let api = api.clone();
            let shopper = shopper.clone();
            async move {
                let mut ids = Vec::new();
                for i in 0..5 {
                    let r = lane + i + round;
                    let id = id_of(&api.order(r, &shopper, product, 1).await);
                    api.move_order(r + 1, id, "paid").await;
                    api.move_order(r, id, "shipped").await;
                    ids.push(id);
                }
                ids
            }
        });
        async move {
            futures::future::join_all(lanes)
                .await
                .into_iter()
                .flatten()
                .collect::<Vec<Uuid>>()
        }
    };
    let mut orders = life(0).await;
    // Cut only once nothing is in flight, so nothing needs sending twice.
    assert!(
        eventually(Duration::from_secs(10), || async {
            app.unsent().await == 0
        })
        .await
    );
    proxy.cut();
    orders.extend(life(1).await);
    assert!(app.unsent().await > 0, "a backlog while the broker is cut");
    proxy.restore();

    let expected = orders.len() * 3;
    let got = queue.take(expected, Duration::from_secs(60)).await;
    let per_order = by_subject(&got);
    for id in &orders {
        let keys: Vec<&str> = per_order
            .get(&format!("orders/{id}"))
            .map(|ms| ms.iter().map(|m| m.routing_key.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            keys,
            ["order.placed", "order.paid", "order.shipped"],
            "order {id}'s events, as delivered"
        );
    }
    assert_eq!(got.len(), expected, "every event exactly once");
    assert!(queue.quiet(Duration::from_millis(300)).await.is_empty());
}
