//! The RabbitMQ bus on the real broker: the bus contract, publisher confirms before the
//! outbox is marked, attempt counting up to the dead queue, the outbox relay, and recovery
//! from a connection the broker closed. Each bus gets its own exchanges and queue prefix and
//! deletes them at the end. Skipped unless ORDERMILL_TEST_AMQP_URL is set.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ordermill_bus::{RabbitBus, RabbitSettings, contract, run_relay};
use ordermill_core::Topology;
use ordermill_core::ports::{
    BusError, DeadLetterPage, Delivery, Envelope, EventBus, Outbox, StoreError,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The store's outbox, in memory: the test's stand-in for the database the events are
/// committed to, not a mock of RabbitMQ (every broker call in these tests is real).
#[derive(Default)]
struct MemoryOutbox {
    rows: Mutex<Vec<Row>>,
}

struct Row {
    envelope: Envelope,
    written: Instant,
    published: bool,
    claimed_until: Option<Instant>,
}

impl MemoryOutbox {
    fn write(&self, envelope: Envelope, age: Duration) {
        self.rows.lock().unwrap().push(Row {
            envelope,
            written: Instant::now() - age,
            published: false,
            claimed_until: None,
        });
    }

    fn is_published(&self, id: Uuid) -> bool {
        self.rows.lock().unwrap().iter().any(|r| r.envelope.event_id == id && r.published)
    }
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn claim_unpublished(
        &self,
        limit: usize,
        min_age: Duration,
        lease: Duration,
    ) -> Result<Vec<Envelope>, StoreError> {
        let now = Instant::now();
        let mut rows = self.rows.lock().unwrap();
        let claimable = rows.iter_mut().filter(|r| {
            !r.published
                && now.duration_since(r.written) >= min_age
                && r.claimed_until.is_none_or(|until| until <= now)
        });
        Ok(claimable
            .take(limit)
            .map(|r| {
                r.claimed_until = Some(now + lease);
                r.envelope.clone()
            })
            .collect())
    }

    async fn release_claims(&self, events: Vec<Uuid>) -> Result<(), StoreError> {
        let mut rows = self.rows.lock().unwrap();
        for row in rows.iter_mut().filter(|r| events.contains(&r.envelope.event_id)) {
            row.claimed_until = None;
        }
        Ok(())
    }

    async fn mark_published(&self, events: Vec<Uuid>) -> Result<(), StoreError> {
        let mut rows = self.rows.lock().unwrap();
        for id in events {
            match rows.iter_mut().find(|r| r.envelope.event_id == id) {
                Some(row) => row.published = true,
                // Published straight from a test, not through the outbox: remember it too.
                None => rows.push(Row {
                    envelope: Envelope {
                        event_id: id,
                        routing_key: Arc::from(""),
                        payload: Arc::from(""),
                    },
                    written: Instant::now(),
                    published: true,
                    claimed_until: None,
                }),
            }
        }
        Ok(())
    }
    async fn oldest_unpublished_age(&self) -> Result<Option<Duration>, StoreError> {
        let rows = self.rows.lock().unwrap();
        Ok(rows.iter().filter(|r| !r.published).map(|r| r.written.elapsed()).max())
    }
}

fn amqp_url() -> Option<String> {
    ordermill_core::test_support::service_url(
        "ORDERMILL_TEST_AMQP_URL",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
    )
}

/// Settings with exchanges and queues no other test uses.
fn settings(url: &str) -> RabbitSettings {
    let unique = Uuid::now_v7().simple().to_string();
    let unique = &unique[unique.len() - 12..];
    RabbitSettings {
        url: url.to_owned(),
        exchange: format!("test.{unique}.orders"),
        dead_letter_exchange: format!("test.{unique}.orders.dlx"),
        queue_prefix: format!("test.{unique}."),
        reconnect_min: ordermill_core::HumanDuration::from_millis(50),
        reconnect_max: ordermill_core::HumanDuration::from_secs(1),
        ..RabbitSettings::default()
    }
}

async fn start(url: &str, topology: Topology) -> (Arc<RabbitBus>, Arc<MemoryOutbox>) {
    let (bus, outbox, _) = start_with(settings(url), topology).await;
    (bus, outbox)
}

async fn start_with(
    settings: RabbitSettings,
    topology: Topology,
) -> (Arc<RabbitBus>, Arc<MemoryOutbox>, RabbitSettings) {
    let outbox = Arc::new(MemoryOutbox::default());
    let bus = RabbitBus::start(settings.clone(), topology, outbox.clone()).await.expect("start");
    (Arc::new(bus), outbox, settings)
}

/// Polls `check` until it yields a value or `within` passes.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn take(bus: &RabbitBus, queue: &str, n: usize) -> Vec<Delivery> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < n {
        assert!(Instant::now() < deadline, "queue {queue}: only {} of {n}", got.len());
        got.extend(bus.receive(queue, n - got.len(), Duration::from_millis(200)).await.unwrap());
    }
    got
}

#[tokio::test]
async fn rabbit_bus_honours_the_bus_contract() {
    let Some(url) = amqp_url() else { return };
    let buses = Mutex::new(Vec::new());
    contract::run_all(|topology| {
        let url = url.clone();
        let buses = &buses;
        async move {
            let (bus, _) = start(&url, topology).await;
            buses.lock().unwrap().push(bus.clone());
            bus as Arc<dyn EventBus>
        }
    })
    .await;
    let buses = std::mem::take(&mut *buses.lock().unwrap());
    for bus in buses {
        bus.delete_topology().await.unwrap();
    }
}

#[tokio::test]
async fn start_against_an_unreachable_broker_is_unavailable_and_says_what_to_check() {
    let Some(_) = amqp_url() else { return };
    let mut settings = settings("amqp://guest:secret@127.0.0.1:1/%2f");
    settings.connect_timeout = ordermill_core::HumanDuration::from_secs(2);
    let started =
        RabbitBus::start(settings, contract::topology(), Arc::new(MemoryOutbox::default())).await;
    let Err(BusError::Unavailable(message)) = started else { panic!("expected Unavailable") };
    assert!(message.contains("127.0.0.1:1") && message.contains("Check"), "{message}");
    assert!(!message.contains("secret"), "the password stays out of messages: {message}");
}

#[tokio::test]
async fn publish_marks_the_outbox_only_after_every_confirm() {
    let Some(url) = amqp_url() else { return };
    let (bus, outbox, settings) = start_with(settings(&url), contract::topology()).await;

    let events: Vec<Envelope> = (0..3).map(|_| contract::envelope("order.created")).collect();
    bus.publish(events.clone()).await.unwrap();
    assert!(events.iter().all(|e| outbox.is_published(e.event_id)));
    let depths = bus.depths().await.unwrap();
    assert_eq!(depths[0].1.ready, 3, "confirmed means enqueued: queue a holds all three");

    // Take the exchange away: the broker refuses the next publish, nothing is marked.
    let admin = lapin::Connection::connect(&url, Default::default()).await.unwrap();
    let channel = admin.create_channel().await.unwrap();
    channel.exchange_delete(settings.exchange.as_str().into(), Default::default()).await.unwrap();
    let refused = contract::envelope("order.created");
    assert!(bus.publish(vec![refused.clone()]).await.is_err());
    assert!(!outbox.is_published(refused.event_id), "marked without a confirm");
    admin.close(200, "done".into()).await.unwrap();

    // The failed channel is replaced and the topology declared again: publishing resumes.
    let later = contract::envelope("order.created");
    eventually("publishing after the exchange was re-declared", Duration::from_secs(10), || {
        let (bus, later) = (bus.clone(), later.clone());
        async move { bus.publish(vec![later]).await.ok() }
    })
    .await;
    assert!(outbox.is_published(later.event_id));
    bus.delete_topology().await.unwrap();
}

#[tokio::test]
async fn a_message_retried_n_times_carries_attempt_n_plus_1_then_dead_letters() {
    let Some(url) = amqp_url() else { return };
    let (bus, _) = start(&url, contract::topology()).await;
    let event = contract::envelope("order.created");
    bus.publish(vec![event.clone()]).await.unwrap();
    const RETRIES: u32 = 4;
    let mut delivery = take(&bus, "a", 1).await.remove(0);
    for n in 1..=RETRIES {
        let after = Duration::from_millis(if n == 2 { 250 } else { 10 });
        bus.retry(&delivery, after, &format!("failure {n}")).await.unwrap();
        delivery = take(&bus, "a", 1).await.remove(0);
        assert_eq!(delivery.attempt, n + 1);
        assert_eq!(delivery.envelope, event);
    }
    bus.dead_letter(&delivery, "gave up").await.unwrap();
    let dead = bus.dead_letters("a", DeadLetterPage::first(1000)).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, RETRIES + 1);
    assert_eq!(dead[0].error, "gave up");
    assert!(dead[0].died_at.0 > 0);
    // Listing does not consume: the dead letter is still there, and counted.
    assert_eq!(bus.dead_letters("a", DeadLetterPage::first(1000)).await.unwrap().len(), 1);
    let a = bus.depths().await.unwrap()[0].1;
    assert_eq!((a.ready, a.delayed, a.in_flight, a.dead), (0, 0, 0, 1));
    bus.delete_topology().await.unwrap();
}

#[tokio::test]
async fn the_relay_publishes_an_event_left_unpublished() {
    let Some(url) = amqp_url() else { return };
    let (bus, outbox) = start(&url, contract::topology()).await;
    // A commit whose publish never happened (the node died right after its COMMIT).
    let stranded = contract::envelope("order.created");
    outbox.write(stranded.clone(), Duration::from_secs(60));
    let stop = CancellationToken::new();
    let relay = tokio::spawn(run_relay(
        bus.clone(),
        outbox.clone(),
        Duration::from_millis(100),
        stop.clone(),
    ));
    let got = take(&bus, "a", 1).await;
    assert_eq!(got[0].envelope, stranded);
    eventually("the relay marks the event", Duration::from_secs(5), || {
        let published = outbox.is_published(stranded.event_id);
        async move { published.then_some(()) }
    })
    .await;
    stop.cancel();
    relay.await.unwrap();
    bus.delete_topology().await.unwrap();
}

/// Closes this bus's connection from the broker side, as a broker restart would.
fn close_connection_on_the_broker(bus: &RabbitBus) {
    let listed = std::process::Command::new("rabbitmqctl")
        .args(["list_connections", "-q", "--no-table-headers", "pid", "client_properties"])
        .output()
        .expect("rabbitmqctl is installed");
    let listed = String::from_utf8_lossy(&listed.stdout);
    let pids: Vec<&str> = listed
        .lines()
        .filter(|line| line.contains(bus.connection_name()) && !line.contains(" admin"))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    assert_eq!(pids.len(), 1, "one connection named {}: {listed}", bus.connection_name());
    let closed = std::process::Command::new("rabbitmqctl")
        .args(["close_connection", pids[0], "test"])
        .status()
        .expect("rabbitmqctl runs");
    assert!(closed.success());
}

#[tokio::test]
async fn a_connection_the_broker_closes_heals_itself_and_loses_nothing() {
    let Some(url) = amqp_url() else { return };
    let (bus, _) = start(&url, contract::topology()).await;
    let before: Vec<Envelope> = (0..5).map(|_| contract::envelope("order.created")).collect();
    bus.publish(before.clone()).await.unwrap();
    let unacked = take(&bus, "a", 2).await;

    close_connection_on_the_broker(&bus);
    eventually("the bus notices the closed connection", Duration::from_secs(5), || {
        let down = !bus.is_connected();
        async move { down.then_some(()) }
    })
    .await;
    assert!(bus.ack(&unacked).await.is_err(), "acks on the dead channel are not recorded");

    let after: Vec<Envelope> = (0..5).map(|_| contract::envelope("order.created")).collect();
    eventually("publishing after the reconnect", Duration::from_secs(10), || {
        let (bus, after) = (bus.clone(), after.clone());
        async move { bus.publish(after).await.ok() }
    })
    .await;

    // Every event arrives, the two that were in flight again; nothing is lost.
    let want: HashSet<Uuid> = before.iter().chain(&after).map(|e| e.event_id).collect();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen != want {
        assert!(Instant::now() < deadline, "received {} of {} events", seen.len(), want.len());
        let got = match bus.receive("a", 20, Duration::from_millis(200)).await {
            Ok(got) => got,
            Err(_) => continue, // still reconnecting
        };
        seen.extend(got.iter().map(|d| d.envelope.event_id));
        bus.ack(&got).await.unwrap();
    }
    bus.delete_topology().await.unwrap();
}

#[tokio::test]
async fn quorum_queues_honour_the_bus_contract_too() {
    let Some(url) = amqp_url() else { return };
    let buses = Mutex::new(Vec::new());
    contract::run_all(|topology| {
        let settings = RabbitSettings { quorum_queues: true, ..settings(&url) };
        let buses = &buses;
        async move {
            let (bus, _, _) = start_with(settings, topology).await;
            buses.lock().unwrap().push(bus.clone());
            bus as Arc<dyn EventBus>
        }
    })
    .await;
    let buses = std::mem::take(&mut *buses.lock().unwrap());
    for bus in buses {
        bus.delete_topology().await.unwrap();
    }
}

#[tokio::test]
async fn acks_go_as_one_frame_only_over_a_run_that_is_all_ours() {
    let Some(url) = amqp_url() else { return };
    // One message per event, so each delivery has a broker tag of its own.
    let one_each = RabbitSettings { events_per_message: 1, ..settings(&url) };
    let (bus, _, _) = start_with(one_each, contract::topology()).await;
    let events: Vec<Envelope> = (0..9).map(|_| contract::envelope("order.created")).collect();
    bus.publish(events.clone()).await.unwrap();
    let a = take(&bus, "a", 3).await;
    let b = take(&bus, "a", 3).await;
    let c = take(&bus, "a", 3).await;
    // b is acked while a, below it, is still being decided: b's ack must not cover a.
    bus.ack(&b).await.unwrap();
    // One of a goes to the dead letters (a copy is published, then the original acked), the
    // rest are acked: a run from the lowest unsettled tag, sent as one frame.
    bus.dead_letter(&a[0], "poison").await.unwrap();
    bus.ack(&a[1..]).await.unwrap();
    bus.ack(&c).await.unwrap();
    let dead = bus.dead_letters("a", DeadLetterPage::first(1000)).await.unwrap();
    assert_eq!(dead.len(), 1, "exactly the one dead-lettered: {dead:?}");
    assert_eq!(dead[0].envelope.event_id, a[0].envelope.event_id);
    // Nothing comes back: every ack landed on the delivery it was meant for, and the channel
    // survived (an ack of a tag already settled would have closed it).
    assert!(bus.receive("a", 10, Duration::from_millis(500)).await.unwrap().is_empty());
    let depth = bus.depths().await.unwrap()[0].1;
    assert_eq!((depth.ready, depth.delayed, depth.in_flight, depth.dead), (0, 0, 0, 1));
    let seen: HashSet<Uuid> = a.iter().chain(&b).chain(&c).map(|d| d.envelope.event_id).collect();
    assert_eq!(seen.len(), 9, "each event delivered once");
    bus.delete_topology().await.unwrap();
}

/// Messages ready in the work queue `a` of `settings`, counted by the broker.
async fn messages_in_a(settings: &RabbitSettings) -> u32 {
    let connection =
        lapin::Connection::connect(&settings.url, lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let options = lapin::options::QueueDeclareOptions { passive: true, ..Default::default() };
    let name = format!("{}a", settings.queue_prefix);
    let queue = channel
        .queue_declare(name.as_str().into(), options, lapin::types::FieldTable::default())
        .await
        .unwrap();
    let _ = connection.close(200, "counted".into()).await;
    queue.message_count()
}

#[tokio::test]
async fn the_events_of_one_publish_travel_as_few_messages() {
    let Some(url) = amqp_url() else { return };
    let at_most_20 = RabbitSettings { events_per_message: 20, ..settings(&url) };
    let (bus, outbox, settings) = start_with(at_most_20, contract::topology()).await;
    let mut events: Vec<Envelope> = (0..50).map(|_| contract::envelope("order.created")).collect();
    // Another key travels in a message of its own; a key no queue takes is not sent at all.
    events.push(contract::envelope("payment.failed"));
    events.push(contract::envelope("nobody.listens"));
    bus.publish(events.clone()).await.unwrap();
    assert!(events.iter().all(|e| outbox.is_published(e.event_id)));
    // Queue a takes order.created only: 50 events in messages of 20, 20 and 10.
    assert_eq!(messages_in_a(&settings).await, 3);
    let depth = bus.depths().await.unwrap()[0].1;
    assert!(depth.ready > 3, "ready is counted in events (an estimate): {depth:?}");
    let got = take(&bus, "a", 50).await;
    let ids: HashSet<Uuid> = got.iter().map(|d| d.envelope.event_id).collect();
    assert_eq!(ids.len(), 50);
    assert!(got.iter().all(|d| d.envelope.routing_key.as_ref() == "order.created"));
    bus.ack(&got).await.unwrap();
    assert!(bus.receive("a", 10, Duration::from_millis(300)).await.unwrap().is_empty());
    assert_eq!(messages_in_a(&settings).await, 0);
    bus.delete_topology().await.unwrap();
}

#[tokio::test]
async fn a_batch_partly_settled_when_its_channel_closes_comes_back_whole() {
    let Some(url) = amqp_url() else { return };
    let (bus, _) = start(&url, contract::topology()).await;
    let events: Vec<Envelope> = (0..10).map(|_| contract::envelope("order.created")).collect();
    bus.publish(events.clone()).await.unwrap();
    let got = take(&bus, "a", 10).await;
    // Six acked: the message stays unacked on the broker while four are undecided.
    bus.ack(&got[..6]).await.unwrap();
    close_connection_on_the_broker(&bus);
    eventually("the bus notices the closed connection", Duration::from_secs(5), || {
        let down = !bus.is_connected();
        async move { down.then_some(()) }
    })
    .await;
    assert!(bus.ack(&got[6..]).await.is_err(), "acks on the dead channel are not recorded");
    // At least once: all ten come back, the acked six too (consumers deduplicate on the id).
    let want: HashSet<Uuid> = events.iter().map(|e| e.event_id).collect();
    let mut seen = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while seen != want {
        assert!(Instant::now() < deadline, "received {} of {} events", seen.len(), want.len());
        let Ok(again) = bus.receive("a", 20, Duration::from_millis(200)).await else {
            // Still reconnecting (and this runtime has one thread: let the supervisor run).
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Consumers look these up before calling out again: the broker flags them.
        assert!(again.iter().all(Delivery::may_be_repeat), "redelivered, and flagged so");
        seen.extend(again.iter().map(|d| d.envelope.event_id));
        bus.ack(&again).await.unwrap();
    }
    bus.delete_topology().await.unwrap();
}

#[tokio::test]
async fn an_amqps_url_is_verified_against_rabbitmq_ca_file_and_refused_without_it() {
    let Some(url) = amqp_url() else { return };
    // The broker's plain port behind a TLS front with a CA made for this run.
    let ca = ordermill_tls_testkit::TestCa::new();
    let (tls_url, relayed) = ca.front_amqp(&url).await;
    let ca_file = ca.pem_file();

    let mut trusting = settings(&tls_url);
    trusting.ca_file = Some(ca_file.to_path_buf());
    let (bus, outbox, _) = start_with(trusting, contract::topology()).await;
    let event = contract::envelope("order.created");
    bus.publish(vec![event.clone()]).await.unwrap();
    assert!(outbox.is_published(event.event_id), "confirmed over TLS");
    let got = take(&bus, "a", 1).await;
    assert_eq!(got[0].envelope.event_id, event.event_id);
    assert!(relayed.load(std::sync::atomic::Ordering::Relaxed) >= 1, "it went through TLS");
    bus.delete_topology().await.unwrap();

    // Without the CA the system's do not know the front's certificate: no connection.
    let mut doubting = settings(&tls_url);
    doubting.connect_timeout = ordermill_core::HumanDuration::from_secs(3);
    let started =
        RabbitBus::start(doubting, contract::topology(), Arc::new(MemoryOutbox::default())).await;
    let Err(BusError::Unavailable(message)) = started else {
        panic!("a certificate no trusted CA signed was accepted")
    };
    assert!(message.to_lowercase().contains("certificate"), "{message}");
}
