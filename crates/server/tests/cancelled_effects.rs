//! A consumer's effect transaction and the work after it (units given back to the hot-stock
//! cache, purchase limits, emitted events) survive the handler being cancelled — timed out by
//! the consumer loop — while the transaction's reply is on its way: the delivery is retried
//! and finds its effect recorded, so without this the release would be lost for good.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ordermill_core::ports::{OrderStore, StockCache};
use ordermill_core::{Fact, OrderIdGenerator, SystemClock};
use ordermill_server::adapters::integrations::log_notifier::LogNotifier;
use ordermill_server::adapters::integrations::simulated_gateway::SimulatedGateway;
use ordermill_server::adapters::workers::{Outcome, Pipeline, settle};
use ordermill_server::services::order_cache::OrderCache;
use ordermill_server::services::purchase_limits::PurchaseLimits;
use support::faulty_store::{Rig, rig};
use support::reports::sqlite_reports;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_released_by_an_effect_come_back_even_if_its_handler_is_cancelled() {
    let Rig { dir, sqlite, store, product, cache, bus } = rig(7).await;
    let ids = OrderIdGenerator::new();
    let order = ordermill_store::contract::accepted(&ids, &[("tea", 3)], None);
    store.commit_orders(Arc::new(vec![order.clone()])).await.unwrap();
    let pipeline = Pipeline {
        store: store.clone(),
        bus: bus.clone(),
        cache: cache.clone(),
        clock: Arc::new(SystemClock),
        ids: Arc::new(OrderIdGenerator::new()),
        order_cache: OrderCache::new(Arc::new(ordermill_cache::LocalOrderCache::new(
            100,
            Duration::from_secs(60),
        ))),
        gateway: Arc::new(SimulatedGateway::new(Duration::ZERO, 0.0)),
        notifier: Arc::new(LogNotifier),
        purchase_limits: Arc::new(PurchaseLimits::load(sqlite.clone()).await.unwrap()),
        message_timeout: Duration::from_secs(1),
        unrouted: ordermill_core::RoutingKeys::NONE,
        pay_later: None,
        reports: sqlite_reports(&sqlite, bus.clone(), dir.path()),
    };

    // The payment failed (the order is cancelled), then inventory releases the 3 held units:
    // its transaction commits at once but the reply takes 300 ms, and the handler is
    // cancelled after 50.
    let apply = |consumer: &str, fact: Fact, reason: Option<String>| {
        let consumer: Arc<str> = Arc::from(consumer);
        let event = pipeline.ids.next_uuid(pipeline.clock.now());
        let mut effects = settle::Effects::default();
        effects.push(
            0,
            settle::effect(&pipeline, &consumer, event, order.order.id, Some(fact), reason),
        );
        effects
    };
    let mut outcomes = vec![Outcome::Ack];
    apply("payment", Fact::PaymentFailed, Some("card declined".into()))
        .commit(&pipeline, &mut outcomes)
        .await;
    assert!(matches!(outcomes[0], Outcome::Ack));
    store.effects_reply_delay_ms.store(300, Ordering::SeqCst);
    let effects = apply("inventory", Fact::StockReleased, None);
    let mut outcomes = vec![Outcome::Ack];
    let cancelled =
        tokio::time::timeout(Duration::from_millis(50), effects.commit(&pipeline, &mut outcomes))
            .await;
    assert!(cancelled.is_err(), "the handler was cancelled mid-transaction");

    let deadline = Instant::now() + Duration::from_secs(5);
    while cache.available(&product.sku).await.unwrap() != Some(10) {
        assert!(Instant::now() < deadline, "the released units never came back to the cache");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let stored = sqlite.get_product(&product.sku).await.unwrap().unwrap();
    assert_eq!(stored.reserved, 0, "the store released them once");
}
