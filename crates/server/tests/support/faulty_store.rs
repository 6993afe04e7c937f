//! A real store with faults on demand: the reply of a commit lost (after or without the
//! commit), a commit that stalls before it completes, an effect transaction whose reply is
//! slow. Wraps the SQLite store.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use ordermill_bus::EmbeddedBus;
use ordermill_cache::LocalStockCache;
use ordermill_core::ports::StockCache;
use ordermill_core::ports::{AcceptedOrder, Effect, EffectOutcome, OrderStore, StoreError};
use ordermill_core::{CustomerId, IdempotencyKey, Order, OrderId, Product, Sku};
use ordermill_server::services::intake::committer::{Batching, Committer, CommitterHandle};
use ordermill_server::services::lease::Lease;
use ordermill_store::SqliteStore;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The next `commit_orders` commits, then reports the connection lost.
pub const COMMIT_THEN_FAIL: u8 = 1;
/// The next `commit_orders` reports the connection lost without committing.
pub const FAIL_WITHOUT_COMMIT: u8 = 2;

/// The SQLite store with faults on demand.
pub struct FaultyStore {
    pub inner: Arc<SqliteStore>,
    /// What the next `commit_orders` does (0: nothing odd).
    pub next_commit: AtomicU8,
    /// How long the next `commit_orders` stalls before it commits, in ms (a disk flush that
    /// stalls).
    pub next_commit_stall_ms: AtomicU64,
    /// How long `apply_effects` waits after its transaction committed, in ms.
    pub effects_reply_delay_ms: AtomicU64,
    /// `commit_orders` calls so far.
    pub commits: AtomicU64,
}

impl FaultyStore {
    pub fn new(inner: Arc<SqliteStore>) -> Self {
        FaultyStore {
            inner,
            next_commit: AtomicU8::new(0),
            next_commit_stall_ms: AtomicU64::new(0),
            effects_reply_delay_ms: AtomicU64::new(0),
            commits: AtomicU64::new(0),
        }
    }
}

#[async_trait]
impl OrderStore for FaultyStore {
    async fn commit_orders(&self, batch: Arc<Vec<AcceptedOrder>>) -> Result<(), StoreError> {
        self.commits.fetch_add(1, Ordering::SeqCst);
        let stall = self.next_commit_stall_ms.swap(0, Ordering::SeqCst);
        if stall > 0 {
            tokio::time::sleep(Duration::from_millis(stall)).await;
        }
        match self.next_commit.swap(0, Ordering::SeqCst) {
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
    async fn find_by_idempotency_keys(
        &self,
        keys: &[(CustomerId, IdempotencyKey)],
    ) -> Result<Vec<Order>, StoreError> {
        self.inner.find_by_idempotency_keys(keys).await
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
    async fn find_orders(
        &self,
        query: ordermill_core::ports::OrderQuery,
    ) -> Result<Vec<Order>, StoreError> {
        self.inner.find_orders(query).await
    }
    async fn due_payments(
        &self,
        now: ordermill_core::UnixMillis,
        limit: u32,
    ) -> Result<Vec<OrderId>, StoreError> {
        self.inner.due_payments(now, limit).await
    }
    async fn outbox_len(&self) -> Result<u64, StoreError> {
        self.inner.outbox_len().await
    }
    async fn apply_effects(&self, effects: Vec<Effect>) -> Result<Vec<EffectOutcome>, StoreError> {
        let outcomes = self.inner.apply_effects(effects).await;
        let delay = self.effects_reply_delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        outcomes
    }
    async fn processed(&self, consumer: &str, events: Vec<Uuid>) -> Result<Vec<Uuid>, StoreError> {
        self.inner.processed(consumer, events).await
    }
    async fn stock_returned(&self, orders: Vec<OrderId>) -> Result<(), StoreError> {
        self.inner.stock_returned(orders).await
    }
    async fn overdue_stock_returns(
        &self,
        age: Duration,
        limit: u32,
    ) -> Result<Vec<OrderId>, StoreError> {
        self.inner.overdue_stock_returns(age, limit).await
    }
    async fn check_writable(&self) -> Result<(), StoreError> {
        self.inner.check_writable().await
    }
}

/// What the fault tests below the committer and the consumers start from: the faulty store
/// over SQLite in a temporary dir, the product `tea` with 10 units in stock, a local stock
/// cache offering `available` of them, and the embedded bus over the store.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub sqlite: Arc<SqliteStore>,
    pub store: Arc<FaultyStore>,
    pub product: Product,
    pub cache: Arc<LocalStockCache>,
    pub bus: Arc<EmbeddedBus>,
}

pub async fn rig(available: i64) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let store = Arc::new(FaultyStore::new(sqlite.clone()));
    let product = ordermill_store::contract::product_for_tests("tea", 10);
    store.upsert_product(&product).await.unwrap();
    let cache = Arc::new(LocalStockCache::new());
    cache.rebuild(None, &[(product.sku.clone(), available)]).await.unwrap();
    let clock = Arc::new(ordermill_core::SystemClock);
    let bus = EmbeddedBus::start(ordermill_core::Topology::default(), sqlite.clone(), clock);
    let bus = Arc::new(bus.await.unwrap());
    Rig { dir, sqlite, store, product, cache, bus }
}

/// A committer on `rig`'s store, cache and bus, taking at most `max_orders` per commit and
/// shedding what waited past `max_queue_wait`, running until the token fires.
pub fn start_committer(
    rig: &Rig,
    max_orders: usize,
    max_queue_wait: Duration,
) -> (CommitterHandle, CancellationToken, tokio::task::JoinHandle<()>) {
    let (committer, handle) = Committer::new(
        rig.store.clone(),
        rig.cache.clone(),
        rig.bus.clone(),
        Batching {
            max_orders,
            capacity: 64,
            linger: Duration::ZERO,
            publish_linger: Duration::ZERO,
        },
        (max_queue_wait, Arc::new(Lease::unconditional())),
    );
    let stop = CancellationToken::new();
    let running = tokio::spawn(committer.run(stop.clone()));
    (handle, stop, running)
}

/// Returns once the store has begun the stalled commit (it takes the stall when it starts).
pub async fn until_stalling(rig: &Rig) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while rig.store.next_commit_stall_ms.load(Ordering::SeqCst) != 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the committer never started the stalled commit"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
