//! The contract every [`EventBus`] backend must honour. A backend's test calls [`run_all`]
//! with a function that builds a fresh, empty bus for a topology (its own queue names or
//! vhost on a shared broker).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordermill_core::ports::{
    BusError, DeadLetterPage, DeadLetterSelection, Delivery, Envelope, EventBus,
};
use ordermill_core::{Binding, Topology};
use uuid::Uuid;

/// The topology the contract runs on: `a` takes `order.created`; `b` takes `order.*` and
/// `payment.failed`; `c` takes everything.
pub fn topology() -> Topology {
    let bind = |queue: &str, keys: &[&str]| Binding {
        queue: queue.to_owned(),
        keys: keys.iter().map(|k| (*k).to_owned()).collect(),
    };
    Topology(vec![
        bind("a", &["order.created"]),
        bind("b", &["order.*", "payment.failed"]),
        bind("c", &["#"]),
    ])
}

/// A page as large as pages go: every dead letter a contract case makes.
const ALL: DeadLetterPage = DeadLetterPage { offset: 0, limit: DeadLetterPage::MAX_LIMIT };

/// An event with a fresh id.
pub fn envelope(key: &str) -> Envelope {
    let id = Uuid::now_v7();
    Envelope {
        event_id: id,
        routing_key: Arc::from(key),
        payload: Arc::from(format!(r#"{{"event_id":"{id}","order_id":"o","customer_id":"c"}}"#)),
    }
}

async fn take(bus: &dyn EventBus, queue: &str, n: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(
            Instant::now() < deadline,
            "queue {queue}: only {} of {n} deliveries within 10 s",
            got.len()
        );
        got.extend(
            bus.receive(queue, n - got.len(), Duration::from_millis(200)).await.expect("receive"),
        );
    }
    got
}

async fn nothing_on(bus: &dyn EventBus, queue: &str) {
    let extra = bus.receive(queue, 10, Duration::from_millis(100)).await.expect("receive");
    assert!(extra.is_empty(), "queue {queue} delivered {} unexpected message(s)", extra.len());
}

/// Runs every check, each on a fresh bus; panics on the first violation.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn(Topology) -> Fut,
    Fut: Future<Output = Arc<dyn EventBus>>,
{
    routes_by_key(&*make(topology()).await).await;
    ack_removes(&*make(topology()).await).await;
    retry_redelivers_after_the_delay(&*make(topology()).await).await;
    dead_letters_can_be_listed_replayed_and_purged(&*make(topology()).await).await;
    unknown_queues_are_an_error(&*make(topology()).await).await;
    retries_and_replays_stay_on_their_queue_and_keep_the_event(&*make(topology()).await).await;
    events_published_together_are_settled_one_by_one(&*make(topology()).await).await;
}

/// Part of the dead-letter case, on its bus: every case's bus declares a topology, and on a
/// broker with quorum queues each one costs file handles.
async fn dead_letters_are_listed_a_page_at_a_time(bus: &dyn EventBus) {
    let events: Vec<Envelope> = (0..5).map(|_| envelope("order.created")).collect();
    // One at a time, so that the dead letters' order is the events' order on every backend.
    for event in &events {
        bus.publish(vec![event.clone()]).await.expect("publish");
        let delivery = take(bus, "a", 1).await;
        bus.dead_letter(&delivery[0], "boom").await.expect("dead letter");
    }
    let page = |offset, limit| async move {
        let letters = bus.dead_letters("a", DeadLetterPage { offset, limit }).await.expect("list");
        letters.into_iter().map(|d| d.envelope.event_id).collect::<Vec<_>>()
    };
    let ids: Vec<_> = events.iter().map(|e| e.event_id).collect();
    assert_eq!(page(0, 2).await, ids[..2], "the first page, oldest first");
    assert_eq!(page(1, 2).await, ids[1..3], "a page further on");
    assert_eq!(page(3, 10).await, ids[3..], "the last page is short");
    assert!(page(5, 10).await.is_empty(), "past the end");
    assert_eq!(page(0, 10).await, ids, "listing consumed nothing");
    let depths = bus.depths().await.expect("depths");
    let a = depths.iter().find(|(q, _)| q == "a").expect("queue a").1;
    assert_eq!(a.dead, 5, "the total to page through");

    // One at a time, by event id: the others stay dead.
    let one = |i: usize| DeadLetterSelection::Event(ids[i]);
    assert_eq!(bus.replay_dead_letters("a", one(2)).await.expect("replay one"), 1);
    let replayed = take(bus, "a", 1).await;
    assert_eq!(replayed[0].envelope.event_id, ids[2], "only that event came back");
    assert_eq!(replayed[0].attempt, 1, "with a fresh attempt count");
    bus.ack(&replayed).await.expect("ack");
    assert_eq!(bus.purge_dead_letters("a", one(3)).await.expect("purge one"), 1);
    let (mut left, mut want) = (page(0, 10).await, vec![ids[0], ids[1], ids[4]]);
    left.sort();
    want.sort();
    assert_eq!(left, want, "the others are still there");
    assert_eq!(bus.replay_dead_letters("a", one(3)).await.expect("replay gone"), 0, "gone");
    nothing_on(bus, "a").await;
    assert_eq!(bus.purge_dead_letters("a", DeadLetterSelection::All).await.expect("purge"), 3);
}

async fn routes_by_key(bus: &dyn EventBus) {
    let created = envelope("order.created");
    let failed = envelope("payment.failed");
    let confirmed = envelope("order.confirmed");
    let other = envelope("stock.adjusted");
    bus.publish(vec![created.clone(), failed.clone(), confirmed.clone(), other.clone()])
        .await
        .expect("publish");
    let ids = |ds: Vec<Delivery>| ds.into_iter().map(|d| d.envelope.event_id).collect::<Vec<_>>();
    assert_eq!(ids(take(bus, "a", 1).await), vec![created.event_id]);
    let mut b = ids(take(bus, "b", 3).await);
    b.sort();
    let mut want = vec![created.event_id, failed.event_id, confirmed.event_id];
    want.sort();
    assert_eq!(b, want);
    assert_eq!(take(bus, "c", 4).await.len(), 4);
    nothing_on(bus, "a").await;
}

/// However a backend packs the events of one publish (a RabbitMQ message carries many), each
/// is retried, dead-lettered and acked on its own: its batch-mates are neither held back nor
/// delivered again.
async fn events_published_together_are_settled_one_by_one(bus: &dyn EventBus) {
    let events: Vec<Envelope> = (0..12).map(|_| envelope("order.created")).collect();
    bus.publish(events.clone()).await.expect("publish");
    let mut got = take(bus, "a", 12).await;
    got.sort_by_key(|d| d.envelope.event_id);
    let mut sent = events.clone();
    sent.sort_by_key(|e| e.event_id);
    for (delivery, event) in got.iter().zip(&sent) {
        assert_eq!(delivery.envelope, *event, "every event once, intact");
        assert_eq!(delivery.attempt, 1);
    }
    // Settled out of order, one at a time and in groups, across the whole batch.
    bus.ack(&got[5..9]).await.expect("ack");
    bus.retry(&got[2], Duration::from_millis(100), "gateway timeout").await.expect("retry");
    bus.ack(&got[9..]).await.expect("ack");
    bus.dead_letter(&got[3], "poison").await.expect("dead letter");
    bus.ack(&got[..2]).await.expect("ack");
    bus.ack(&got[4..5]).await.expect("ack");
    let again = take(bus, "a", 1).await;
    assert_eq!(again[0].envelope.event_id, got[2].envelope.event_id, "only the retried one");
    assert_eq!(again[0].attempt, 2);
    bus.ack(&again).await.expect("ack");
    let dead = bus.dead_letters("a", ALL).await.expect("dead letters");
    assert_eq!(dead.len(), 1, "only the dead-lettered one: {dead:?}");
    assert_eq!(dead[0].envelope.event_id, got[3].envelope.event_id);
    nothing_on(bus, "a").await;
    let depths = bus.depths().await.expect("depths");
    let a = depths.iter().find(|(q, _)| q == "a").expect("queue a").1;
    assert_eq!((a.backlog(), a.dead), (0, 1));
}

async fn ack_removes(bus: &dyn EventBus) {
    bus.publish(vec![envelope("order.created"), envelope("order.created")]).await.expect("publish");
    let got = take(bus, "a", 2).await;
    assert!(got.iter().all(|d| d.attempt == 1 && !d.may_be_repeat()), "first deliveries: {got:?}");
    bus.ack(&got).await.expect("ack");
    nothing_on(bus, "a").await;
    let depths = bus.depths().await.expect("depths");
    let a = depths.iter().find(|(q, _)| q == "a").expect("queue a").1;
    assert_eq!(a.backlog(), 0);
    let b = depths.iter().find(|(q, _)| q == "b").expect("queue b").1;
    assert_eq!(b.ready, 2, "acking on a leaves b's copies alone");
}

async fn retry_redelivers_after_the_delay(bus: &dyn EventBus) {
    let event = envelope("order.created");
    bus.publish(vec![event.clone()]).await.expect("publish");
    let first = take(bus, "a", 1).await.remove(0);
    let retried_at = Instant::now();
    bus.retry(&first, Duration::from_millis(400), "gateway timeout").await.expect("retry");
    nothing_on(bus, "a").await;
    let second = take(bus, "a", 1).await.remove(0);
    assert!(
        retried_at.elapsed() >= Duration::from_millis(350),
        "redelivered after {:?}",
        retried_at.elapsed()
    );
    assert_eq!(second.envelope.event_id, event.event_id);
    assert_eq!(second.attempt, 2);
    assert!(second.may_be_repeat(), "a retry may follow work done");
    bus.ack(&[second]).await.expect("ack");
}

async fn dead_letters_can_be_listed_replayed_and_purged(bus: &dyn EventBus) {
    let event = envelope("order.created");
    bus.publish(vec![event.clone()]).await.expect("publish");
    let mut delivery = take(bus, "a", 1).await.remove(0);
    for attempt in 1..3 {
        assert_eq!(delivery.attempt, attempt);
        bus.retry(&delivery, Duration::from_millis(10), "still failing").await.expect("retry");
        delivery = take(bus, "a", 1).await.remove(0);
    }
    bus.dead_letter(&delivery, "gave up: boom").await.expect("dead letter");
    nothing_on(bus, "a").await;
    let dead = bus.dead_letters("a", ALL).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].envelope.event_id, event.event_id);
    assert_eq!(dead[0].attempts, 3);
    assert_eq!(dead[0].error, "gave up: boom");

    assert_eq!(bus.replay_dead_letters("a", DeadLetterSelection::All).await.expect("replay"), 1);
    assert!(bus.dead_letters("a", ALL).await.expect("list").is_empty());
    let replayed = take(bus, "a", 1).await.remove(0);
    assert_eq!(replayed.envelope.event_id, event.event_id);
    assert_eq!(replayed.attempt, 1, "a replay starts a fresh attempt count");

    bus.dead_letter(&replayed, "boom again").await.expect("dead letter");
    assert_eq!(bus.purge_dead_letters("a", DeadLetterSelection::All).await.expect("purge"), 1);
    assert!(bus.dead_letters("a", ALL).await.expect("list").is_empty());
    nothing_on(bus, "a").await;
    dead_letters_are_listed_a_page_at_a_time(bus).await;
}

async fn unknown_queues_are_an_error(bus: &dyn EventBus) {
    let err = bus.receive("nope", 1, Duration::from_millis(10)).await.expect_err("unknown queue");
    assert!(matches!(err, BusError::UnknownQueue(q) if q == "nope"));
    assert!(bus.dead_letters("nope", ALL).await.is_err());
}

/// A retried, dead-lettered and replayed copy is the same event (key and body kept), and it
/// goes back to its own queue only, not to the other queues bound to its key.
async fn retries_and_replays_stay_on_their_queue_and_keep_the_event(bus: &dyn EventBus) {
    let event = envelope("order.created");
    bus.publish(vec![event.clone()]).await.expect("publish");
    for queue in ["b", "c"] {
        let copy = take(bus, queue, 1).await;
        bus.ack(&copy).await.expect("ack");
    }
    let first = take(bus, "a", 1).await.remove(0);
    bus.retry(&first, Duration::from_millis(10), "flaky").await.expect("retry");
    let second = take(bus, "a", 1).await.remove(0);
    assert_eq!(second.envelope, event, "a retry keeps the routing key and the body");
    bus.dead_letter(&second, "boom").await.expect("dead letter");
    let dead = bus.dead_letters("a", ALL).await.expect("list");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].envelope, event, "a dead letter keeps the routing key and the body");
    assert_eq!(bus.replay_dead_letters("a", DeadLetterSelection::All).await.expect("replay"), 1);
    let replayed = take(bus, "a", 1).await;
    assert_eq!(replayed[0].envelope, event);
    bus.ack(&replayed).await.expect("ack");
    nothing_on(bus, "b").await;
    nothing_on(bus, "c").await;
}
