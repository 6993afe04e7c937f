//! The embedded bus passes the bus contract, and what it owes survives a restart.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::Duration;

use ordermill_bus::{EmbeddedBus, contract};
use ordermill_core::ports::{AcceptedOrder, BusLedger, DeadLetterPage, EventBus, OrderStore};
use ordermill_core::{OrderIdGenerator, OutboxEvent, SystemClock, Topology};
use ordermill_store::SqliteStore;

#[tokio::test]
async fn embedded_bus_honours_the_bus_contract() {
    let dirs = std::sync::Mutex::new(Vec::new());
    contract::run_all(|topology| {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        dirs.lock().unwrap().push(dir);
        async move {
            let bus = EmbeddedBus::start(topology, store, Arc::new(SystemClock)).await.unwrap();
            Arc::new(bus) as Arc<dyn EventBus>
        }
    })
    .await;
}

/// A fresh store (in the returned directory) holding one committed order, not yet delivered.
async fn store_with_one_order() -> (tempfile::TempDir, Arc<SqliteStore>, AcceptedOrder) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let product = ordermill_core::Product {
        sku: ordermill_core::Sku::parse("s1").unwrap(),
        name: ordermill_core::ProductName::parse("S").unwrap(),
        price: ordermill_core::Money::parse("p", "2.50").unwrap(),
        stock: ordermill_core::StockLevel::parse(100).unwrap(),
        reserved: 0,
    };
    store.upsert_product(&product).await.unwrap();
    let order = ordermill_store::contract::accepted(&OrderIdGenerator::new(), &[("s1", 1)], None);
    store.commit_orders(Arc::new(vec![order.clone()])).await.unwrap();
    (dir, store, order)
}

/// The bus as a node starting on `store` finds it (a restart after a crash, when it was open).
async fn restart(store: &Arc<SqliteStore>) -> EmbeddedBus {
    EmbeddedBus::start(Topology::default(), store.clone(), Arc::new(SystemClock)).await.unwrap()
}

fn envelope_of(accepted: &AcceptedOrder) -> ordermill_core::ports::Envelope {
    let event = OutboxEvent::order_created(&accepted.order, accepted.event_id);
    ordermill_core::ports::Envelope {
        event_id: event.event_id,
        routing_key: Arc::from(event.routing_key.as_str()),
        payload: Arc::from(event.payload.as_str()),
    }
}

#[tokio::test]
async fn retried_and_dead_messages_survive_a_restart_and_acked_ones_come_back_as_repeats() {
    let (_dir, store, accepted) = store_with_one_order().await;
    let envelope = envelope_of(&accepted);
    {
        let bus = restart(&store).await;
        // Recovery already found the committed event for all three queues.
        let inv = bus.receive("inventory", 10, Duration::from_secs(1)).await.unwrap();
        assert_eq!(inv.len(), 1);
        assert_eq!(inv[0].envelope, envelope, "the body is rebuilt from the order");
        assert!(inv[0].may_be_repeat(), "recovered at start: it may have been handled before");
        bus.ack(&inv).await.unwrap();
        let pay = bus.receive("payment", 10, Duration::from_secs(1)).await.unwrap();
        bus.retry(&pay[0], Duration::from_millis(300), "gateway down").await.unwrap();
        let notify = bus.receive("notify", 10, Duration::from_secs(1)).await.unwrap();
        bus.dead_letter(&notify[0], "webhook 500").await.unwrap();
    } // "crash": the bus is dropped without any shutdown step

    let bus = restart(&store).await;
    // An ack of an unfinished event is kept in memory only: the consumer's processed record
    // is the durable proof, and the event comes back flagged so the consumer looks it up.
    let inv = bus.receive("inventory", 10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(inv.len(), 1);
    assert_eq!((inv[0].attempt, inv[0].may_be_repeat()), (1, true));
    bus.ack(&inv).await.unwrap();
    let pay = bus.receive("payment", 10, Duration::from_secs(2)).await.unwrap();
    assert_eq!((pay.len(), pay[0].attempt), (1, 2), "the retry comes back with its attempt count");
    let dead = bus.dead_letters("notify", DeadLetterPage::first(10)).await.unwrap();
    assert_eq!((dead.len(), dead[0].error.as_str()), (1, "webhook 500"));

    // Once payment acks and notify's dead letter is purged, the outbox row goes.
    bus.ack(&pay).await.unwrap();
    let with_dead = bus.backlog_hint();
    bus.purge_dead_letters("notify", ordermill_core::ports::DeadLetterSelection::All)
        .await
        .unwrap();
    assert_eq!(
        bus.backlog_hint(),
        with_dead - 1,
        "a dead letter is held in memory here, so intake's backpressure counts it until purged"
    );
    assert_eq!(store.outbox_len().await.unwrap(), 0);
    assert!(store.unfinished().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_purge_survives_a_restart() {
    let (_dir, store, accepted) = store_with_one_order().await;
    {
        let bus = restart(&store).await;
        let notify = bus.receive("notify", 10, Duration::from_secs(1)).await.unwrap();
        bus.dead_letter(&notify[0], "webhook 500").await.unwrap();
        let purged = bus
            .purge_dead_letters("notify", ordermill_core::ports::DeadLetterSelection::All)
            .await
            .unwrap();
        assert_eq!(purged, 1);
    } // "crash" with inventory and payment still owing the event

    let bus = restart(&store).await;
    assert!(
        bus.receive("notify", 10, Duration::from_millis(200)).await.unwrap().is_empty(),
        "an operator's purge is written down: the event never comes back to that queue"
    );
    for queue in ["inventory", "payment"] {
        let got = bus.receive(queue, 10, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got.len(), 1, "{queue}");
        assert_eq!(got[0].envelope, envelope_of(&accepted));
        bus.ack(&got).await.unwrap();
    }
    assert_eq!(store.outbox_len().await.unwrap(), 0);
    assert!(store.unfinished().await.unwrap().is_empty(), "nothing is left owing");
}
