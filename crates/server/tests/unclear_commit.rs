//! A group commit whose reply is lost (the connection failed after COMMIT reached the
//! database) is read back before anything is released: stored orders are answered as
//! accepted and keep their units; orders that were not stored are released and refused.
//! The store is the real SQLite store behind a wrapper that loses the commit's reply.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ordermill_core::ports::{
    AcceptedOrder, Effect, EffectOutcome, OrderStore, StockCache, StoreError,
};
use ordermill_core::{CustomerId, IdempotencyKey, Order, OrderId, Product, Sku, SystemClock};
use ordermill_server::services::intake::committer::{CommitRequest, Committer, FailKind};
use ordermill_store::SqliteStore;
use tokio::sync::oneshot;
use uuid::Uuid;

/// What the next `commit_orders` does.
const COMMIT_THEN_FAIL: u8 = 1;
const FAIL_WITHOUT_COMMIT: u8 = 2;

struct LosesReplies {
    inner: Arc<SqliteStore>,
    next: AtomicU8,
}

#[async_trait]
impl OrderStore for LosesReplies {
    async fn commit_orders(&self, batch: Arc<Vec<AcceptedOrder>>) -> Result<(), StoreError> {
        match self.next.swap(0, Ordering::SeqCst) {
            COMMIT_THEN_FAIL => {
                self.inner.commit_orders(batch).await?;
                Err(StoreError::Unavailable("connection reset after COMMIT".into()))
            }
            FAIL_WITHOUT_COMMIT => Err(StoreError::Unavailable("connection reset".into())),
            _ => self.inner.commit_orders(batch).await,
        }
    }
    async fn upsert_product(&self, p: &Product) -> Result<(Product, Option<Product>), StoreError> {
        self.inner.upsert_product(p).await
    }
    async fn get_product(&self, sku: &Sku) -> Result<Option<Product>, StoreError> {
        self.inner.get_product(sku).await
    }
    async fn load_products(&self) -> Result<Vec<Product>, StoreError> {
        self.inner.load_products().await
    }
    async fn get_order(&self, id: OrderId) -> Result<Option<Order>, StoreError> {
        self.inner.get_order(id).await
    }
    async fn find_by_idempotency_key(
        &self,
        customer: &CustomerId,
        key: &IdempotencyKey,
    ) -> Result<Option<Order>, StoreError> {
        self.inner.find_by_idempotency_key(customer, key).await
    }
    async fn forget_idempotency_key(&self, order: OrderId) -> Result<(), StoreError> {
        self.inner.forget_idempotency_key(order).await
    }
    async fn orders_of_customer(
        &self,
        customer: &CustomerId,
        before: Option<OrderId>,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError> {
        self.inner.orders_of_customer(customer, before, limit).await
    }
    async fn outbox_len(&self) -> Result<u64, StoreError> {
        self.inner.outbox_len().await
    }
    async fn apply_effects(&self, effects: Vec<Effect>) -> Result<Vec<EffectOutcome>, StoreError> {
        self.inner.apply_effects(effects).await
    }
    async fn processed(&self, consumer: &str, events: Vec<Uuid>) -> Result<Vec<Uuid>, StoreError> {
        self.inner.processed(consumer, events).await
    }
    async fn check_writable(&self) -> Result<(), StoreError> {
        self.inner.check_writable().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_commit_reply_is_read_back_before_anything_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let store = Arc::new(LosesReplies { inner: sqlite.clone(), next: AtomicU8::new(0) });
    let product = ordermill_store::contract::product_for_tests("tea", 10);
    store.upsert_product(&product).await.unwrap();
    let cache = Arc::new(ordermill_cache::LocalStockCache::new());
    cache.rebuild(None, &[(product.sku.clone(), 10)]).await.unwrap();
    let bus = Arc::new(
        ordermill_bus::EmbeddedBus::start(
            ordermill_core::Topology::default(),
            sqlite.clone(),
            Arc::new(SystemClock),
        )
        .await
        .unwrap(),
    );
    let (committer, handle) =
        Committer::new(store.clone(), cache.clone(), bus, (64, 64), Duration::from_secs(10));
    let stop = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(committer.run(stop.clone()));
    let ids = ordermill_core::OrderIdGenerator::new();

    let place = |units: i64| {
        let order = ordermill_store::contract::accepted(&ids, &[("tea", units)], None);
        let lines = order.order.lines.clone();
        (order, lines)
    };
    let submit = |order: AcceptedOrder| {
        let (reply, answer) = oneshot::channel();
        let handle = handle.clone();
        async move {
            let request = CommitRequest { orders: vec![order], reply, arrived: Instant::now() };
            assert!(handle.submit(request, Duration::from_secs(1)).await.is_ok());
            answer.await.unwrap()
        }
    };

    // Stored, but the reply was lost: answered as durable, its units stay held.
    let (stored, lines) = place(3);
    cache.reserve(&lines).await.unwrap();
    store.next.store(COMMIT_THEN_FAIL, Ordering::SeqCst);
    let outcome = submit(stored.clone()).await;
    assert!(outcome.is_ok(), "read back and found: {outcome:?}");
    assert!(sqlite.get_order(stored.order.id).await.unwrap().is_some());
    assert_eq!(cache.available(&product.sku).await.unwrap(), Some(7), "its 3 stay held");

    // Not stored: refused and released.
    let (lost, lines) = place(2);
    cache.reserve(&lines).await.unwrap();
    store.next.store(FAIL_WITHOUT_COMMIT, Ordering::SeqCst);
    let outcome = submit(lost.clone()).await.unwrap_err();
    assert_eq!(outcome.kind, FailKind::Store);
    assert!(sqlite.get_order(lost.order.id).await.unwrap().is_none());
    assert_eq!(cache.available(&product.sku).await.unwrap(), Some(7), "its 2 came back");

    stop.cancel();
    running.await.unwrap();
}
