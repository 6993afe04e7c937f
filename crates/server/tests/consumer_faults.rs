//! Faults inside a consumer: a handler that panics retries its batch (the delivery is neither
//! acknowledged unhandled nor lost with a dead consumer loop), and an engine that is down holds
//! the delivery without spending its attempts. Runs the real consumer loop on the real
//! embedded bus (SQLite ledger in a temp dir).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[path = "support/reports.rs"]
mod reports_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ordermill_bus::EmbeddedBus;
use ordermill_core::ports::{DeadLetterPage, Delivery, Envelope, EventBus};
use ordermill_core::{HumanDuration, SystemClock, Topology};
use ordermill_server::adapters::workers::{Handler, Outcome, runner};
use ordermill_server::startup::settings::WorkerSettings;
use ordermill_store::SqliteStore;
use reports_support::sqlite_reports;
use tokio_util::sync::CancellationToken;

/// The embedded bus on a fresh SQLite ledger in `dir`, with one `order.created` event on it.
async fn bus_with_one_event(dir: &tempfile::TempDir) -> Arc<dyn EventBus> {
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let bus: Arc<dyn EventBus> = Arc::new(
        EmbeddedBus::start(Topology::default(), store, Arc::new(SystemClock)).await.unwrap(),
    );
    let event = Envelope {
        event_id: uuid::Uuid::now_v7(),
        routing_key: Arc::from("order.created"),
        payload: Arc::from(r#"{"event_id":"x","order_id":"y","customer_id":"z"}"#),
    };
    bus.publish(vec![event]).await.unwrap();
    bus
}

/// Runs the real consumer loop on the `payment` queue until `handler` has been called `calls`
/// times (within 10 s), then stops it; the loop must end cleanly (it survived whatever the
/// handler did).
async fn consume_until(
    handler: Arc<dyn Handler>,
    count: &AtomicU32,
    calls: u32,
    bus: Arc<dyn EventBus>,
    settings: WorkerSettings,
) {
    let stop = CancellationToken::new();
    let consumer =
        tokio::spawn(runner::run("payment".into(), handler, bus, settings, stop.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while count.load(Ordering::SeqCst) < calls {
        assert!(Instant::now() < deadline, "the delivery was not handled {calls} times");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    consumer.await.expect("the consumer loop survives and stops cleanly");
}

/// Panics on its first batch, then acknowledges everything, remembering the attempts it saw.
struct PanicsOnce {
    calls: AtomicU32,
    attempts: std::sync::Mutex<Vec<u32>>,
}

#[async_trait]
impl Handler for PanicsOnce {
    async fn handle(&self, batch: &[Delivery]) -> Vec<Outcome> {
        self.attempts.lock().unwrap().extend(batch.iter().map(|d| d.attempt));
        if self.calls.fetch_add(1, Ordering::SeqCst) == 0 {
            panic!("a bug in the handler");
        }
        vec![Outcome::Ack; batch.len()]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_retries_its_delivery_instead_of_acknowledging_it() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus_with_one_event(&dir).await;

    let handler = Arc::new(PanicsOnce { calls: AtomicU32::new(0), attempts: Default::default() });
    let settings = WorkerSettings {
        retry_base: HumanDuration::from_millis(10),
        retry_max: HumanDuration::from_millis(20),
        ..WorkerSettings::default()
    };
    consume_until(handler.clone(), &handler.calls, 2, bus.clone(), settings).await;
    assert_eq!(*handler.attempts.lock().unwrap(), vec![1, 2], "retried as a second attempt");
    assert!(
        bus.dead_letters("payment", DeadLetterPage::first(10)).await.unwrap().is_empty(),
        "nothing dead-lettered"
    );
}

/// Panics while charging: the task running the charge dies.
struct PanickingGateway;

#[async_trait]
impl ordermill_core::ports::PaymentGateway for PanickingGateway {
    async fn charge(
        &self,
        _request: &ordermill_core::ports::ChargeRequest,
    ) -> Result<(), ordermill_core::ports::ChargeError> {
        panic!("a bug in the gateway client");
    }

    async fn request_payment(
        &self,
        _request: &ordermill_core::ports::ChargeRequest,
        _pay_by: ordermill_core::UnixMillis,
    ) -> Result<String, ordermill_core::ports::ChargeError> {
        panic!("a bug in the gateway client");
    }
}

/// The consumers' pipeline on the embedded store and bus in `dir`, charging through `gateway`.
async fn pipeline_with(
    dir: &tempfile::TempDir,
    gateway: Arc<dyn ordermill_core::ports::PaymentGateway>,
) -> (ordermill_server::adapters::workers::Pipeline, Arc<SqliteStore>) {
    use ordermill_cache::{LocalOrderCache, LocalStockCache};
    use ordermill_server::services::order_cache::OrderCache;
    use ordermill_server::services::purchase_limits::PurchaseLimits;

    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let bus: Arc<dyn EventBus> = Arc::new(
        EmbeddedBus::start(Topology::default(), store.clone(), Arc::new(SystemClock))
            .await
            .unwrap(),
    );
    let pipeline = ordermill_server::adapters::workers::Pipeline {
        store: store.clone(),
        bus: bus.clone(),
        cache: Arc::new(LocalStockCache::new()),
        clock: Arc::new(SystemClock),
        ids: Arc::new(ordermill_core::OrderIdGenerator::new()),
        order_cache: OrderCache::new(Arc::new(LocalOrderCache::new(10, Duration::from_secs(60)))),
        gateway,
        notifier: Arc::new(ordermill_server::adapters::integrations::log_notifier::LogNotifier),
        purchase_limits: Arc::new(PurchaseLimits::load(store.clone()).await.unwrap()),
        message_timeout: Duration::from_secs(5),
        unrouted: ordermill_core::RoutingKeys::NONE,
        pay_later: None,
        reports: sqlite_reports(&store, bus.clone(), dir.path()),
    };
    (pipeline, store)
}

/// A payment queue delivery of `order.created` for `order_id`.
fn created(event_id: uuid::Uuid, order_id: ordermill_core::OrderId, redelivered: bool) -> Delivery {
    Delivery {
        tag: 1,
        queue: Arc::from("payment"),
        envelope: Envelope {
            event_id,
            routing_key: Arc::from("order.created"),
            payload: Arc::from(format!(
                r#"{{"order_id":"{order_id}","customer_id":"c-1","total":"9.90"}}"#
            )),
        },
        attempt: 1,
        redelivered,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_charge_whose_task_panics_is_retried_not_acknowledged_uncharged() {
    use ordermill_server::adapters::workers::payment::Payment;

    let dir = tempfile::tempdir().unwrap();
    let (pipeline, _) = pipeline_with(&dir, Arc::new(PanickingGateway)).await;
    let order_id = ordermill_core::OrderIdGenerator::new().next(ordermill_core::UnixMillis(1));
    let delivery = created(uuid::Uuid::now_v7(), order_id, false);
    let outcomes = Payment::new(pipeline).handle(&[delivery]).await;
    assert!(
        matches!(outcomes.as_slice(), [Outcome::Retry(_)]),
        "a charge that never answered is retried: {outcomes:?}"
    );
}

/// Counts charges and charges them all.
#[derive(Default)]
struct CountingGateway(AtomicU32);

#[async_trait]
impl ordermill_core::ports::PaymentGateway for CountingGateway {
    async fn charge(
        &self,
        _request: &ordermill_core::ports::ChargeRequest,
    ) -> Result<(), ordermill_core::ports::ChargeError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    async fn request_payment(
        &self,
        _request: &ordermill_core::ports::ChargeRequest,
        _pay_by: ordermill_core::UnixMillis,
    ) -> Result<String, ordermill_core::ports::ChargeError> {
        Err(ordermill_core::ports::ChargeError::Rejected("these tests charge".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_event_already_charged_is_acked_without_charging_again() {
    use ordermill_server::adapters::workers::payment::Payment;

    let dir = tempfile::tempdir().unwrap();
    let gateway = Arc::new(CountingGateway::default());
    let (pipeline, store) = pipeline_with(&dir, gateway.clone()).await;
    let ids = ordermill_core::OrderIdGenerator::new();
    let (event_id, order_id) = (uuid::Uuid::now_v7(), ids.next(ordermill_core::UnixMillis(1)));
    // The payment consumer's record of this event, as a charge before a crash left it.
    let record = ordermill_store::contract::effect(&ids, "payment", event_id, order_id, None);
    ordermill_core::ports::OrderStore::apply_effects(&*store, vec![record]).await.unwrap();

    let outcomes =
        Payment::new(pipeline.clone()).handle(&[created(event_id, order_id, true)]).await;
    assert!(matches!(outcomes.as_slice(), [Outcome::Ack]), "{outcomes:?}");
    assert_eq!(gateway.0.load(Ordering::SeqCst), 0, "a redelivery of a charged event");

    // A retry is looked up too.
    let mut retry = created(event_id, order_id, false);
    retry.attempt = 2;
    let outcomes = Payment::new(pipeline.clone()).handle(&[retry]).await;
    assert!(matches!(outcomes.as_slice(), [Outcome::Ack]), "{outcomes:?}");
    assert_eq!(gateway.0.load(Ordering::SeqCst), 0, "a retry of a charged event");

    // A first delivery is not looked up (only an event published twice can be one): charged
    // again under the same key, its effect still recorded once.
    let outcomes = Payment::new(pipeline).handle(&[created(event_id, order_id, false)]).await;
    assert!(matches!(outcomes.as_slice(), [Outcome::Ack]), "{outcomes:?}");
    assert_eq!(gateway.0.load(Ordering::SeqCst), 1);
}

/// Answers "the store is down" twice, then acknowledges.
struct StoreDownTwice {
    calls: AtomicU32,
    attempts: std::sync::Mutex<Vec<u32>>,
}

#[async_trait]
impl Handler for StoreDownTwice {
    async fn handle(&self, batch: &[Delivery]) -> Vec<Outcome> {
        self.attempts.lock().unwrap().extend(batch.iter().map(|d| d.attempt));
        if self.calls.fetch_add(1, Ordering::SeqCst) < 2 {
            return vec![
                Outcome::Unavailable("store: cannot reach PostgreSQL".into());
                batch.len()
            ];
        }
        vec![Outcome::Ack; batch.len()]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_outage_holds_the_message_without_spending_its_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let bus = bus_with_one_event(&dir).await;
    let handler =
        Arc::new(StoreDownTwice { calls: AtomicU32::new(0), attempts: Default::default() });
    // One attempt only: spending it on the outage would dead-letter the message at once.
    let settings = WorkerSettings { max_attempts: 1, ..WorkerSettings::default() };
    consume_until(handler.clone(), &handler.calls, 3, bus.clone(), settings).await;
    assert_eq!(*handler.attempts.lock().unwrap(), vec![1, 1, 1], "no attempt was spent");
    assert!(
        bus.dead_letters("payment", DeadLetterPage::first(10)).await.unwrap().is_empty(),
        "nothing dead-lettered"
    );
    let depths = bus.depths().await.unwrap();
    let payment = depths.iter().find(|(q, _)| q == "payment").unwrap();
    assert_eq!(payment.1.backlog(), 0, "acknowledged once the engine was back: {depths:?}");
}
