//! `workers.linger`: a consumer loop whose batch shows the queue is busy waits for more
//! deliveries before it handles them (fewer, fuller store transactions and messages under
//! load), and a lone delivery is handled at once. Runs the real consumer loop on the real
//! embedded bus (SQLite ledger in a temp dir).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ordermill_bus::EmbeddedBus;
use ordermill_core::ports::{Delivery, Envelope, EventBus};
use ordermill_core::{HumanDuration, SystemClock, Topology};
use ordermill_server::adapters::workers::{Handler, Outcome, runner};
use ordermill_server::startup::settings::WorkerSettings;
use ordermill_store::SqliteStore;
use tokio_util::sync::CancellationToken;

async fn embedded_bus(dir: &tempfile::TempDir) -> Arc<dyn EventBus> {
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    Arc::new(EmbeddedBus::start(Topology::default(), store, Arc::new(SystemClock)).await.unwrap())
}

fn events(n: usize) -> Vec<Envelope> {
    (0..n)
        .map(|_| Envelope {
            event_id: uuid::Uuid::now_v7(),
            routing_key: Arc::from("order.created"),
            payload: Arc::from(r#"{"event_id":"x","order_id":"y","customer_id":"z"}"#),
        })
        .collect()
}

/// Acknowledges everything, remembering the size of each batch it was given.
#[derive(Default)]
struct Sizes {
    batches: Mutex<Vec<usize>>,
    handled: AtomicUsize,
}

#[async_trait]
impl Handler for Sizes {
    async fn handle(&self, batch: &[Delivery]) -> Vec<Outcome> {
        self.batches.lock().unwrap().push(batch.len());
        self.handled.fetch_add(batch.len(), Ordering::SeqCst);
        vec![Outcome::Ack; batch.len()]
    }
}

struct Consumer {
    handler: Arc<Sizes>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Consumer {
    fn start(bus: Arc<dyn EventBus>, linger: Duration) -> Consumer {
        let handler = Arc::new(Sizes::default());
        let settings = WorkerSettings {
            linger: HumanDuration::from_millis(u64::try_from(linger.as_millis()).unwrap()),
            ..WorkerSettings::default()
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(runner::run(
            "payment".into(),
            handler.clone(),
            bus,
            settings,
            stop.clone(),
        ));
        Consumer { handler, stop, task }
    }

    /// Waits (at most 10 s) until `n` deliveries were handled; returns how long that took.
    async fn handled(&self, n: usize) -> Duration {
        let started = Instant::now();
        while self.handler.handled.load(Ordering::SeqCst) < n {
            assert!(started.elapsed() < Duration::from_secs(10), "{n} deliveries not handled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        started.elapsed()
    }

    async fn stop(self) -> Vec<usize> {
        self.stop.cancel();
        self.task.await.expect("the consumer loop stops cleanly");
        self.handler.batches.lock().unwrap().clone()
    }
}

/// Waits (at most 10 s) until the consumer has taken every delivery waiting on `payment`.
async fn taken(bus: &dyn EventBus) {
    let started = Instant::now();
    loop {
        let depths = bus.depths().await.unwrap();
        let ready = depths.iter().find(|(q, _)| q == "payment").map(|(_, d)| d.ready);
        if ready == Some(0) {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "still waiting: {ready:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Two deliveries waiting (a busy queue), a third published once the loop has taken them.
async fn busy_queue_then_one_more(linger: Duration) -> Vec<usize> {
    let dir = tempfile::tempdir().unwrap();
    let bus = embedded_bus(&dir).await;
    bus.publish(events(2)).await.unwrap();
    let consumer = Consumer::start(bus.clone(), linger);
    taken(&*bus).await;
    bus.publish(events(1)).await.unwrap();
    consumer.handled(3).await;
    consumer.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_consumer_takes_what_arrives_during_its_linger_into_the_same_batch() {
    let batches = busy_queue_then_one_more(Duration::from_millis(900)).await;
    assert_eq!(batches, vec![3], "one batch: the two waiting and the one that came meanwhile");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_linger_a_consumer_handles_what_it_has_at_once() {
    let batches = busy_queue_then_one_more(Duration::ZERO).await;
    assert_eq!(batches, vec![2, 1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_delivery_does_not_wait_for_company() {
    let dir = tempfile::tempdir().unwrap();
    let bus = embedded_bus(&dir).await;
    let consumer = Consumer::start(bus.clone(), Duration::from_millis(900));
    bus.publish(events(1)).await.unwrap();
    let took = consumer.handled(1).await;
    assert!(took < Duration::from_millis(600), "a lone delivery waited {took:?}");
    assert_eq!(consumer.stop().await, vec![1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_stopped_while_it_lingers_still_handles_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let bus = embedded_bus(&dir).await;
    bus.publish(events(2)).await.unwrap();
    let consumer = Consumer::start(bus.clone(), Duration::from_millis(900));
    taken(&*bus).await;
    let stopped = Instant::now();
    let batches = consumer.stop().await;
    assert_eq!(batches, vec![2], "the deliveries in hand are handled, not dropped");
    assert!(stopped.elapsed() < Duration::from_millis(600), "stopping waited out the linger");
}
