//! The order store: orders, their outbox events and the catalog of record.

use std::sync::Arc;

use async_trait::async_trait;
use thiserror::Error;

use crate::clock::UnixMillis;
use crate::customer::CustomerId;
use crate::event::OutboxEvent;
use crate::lifecycle::Fact;
use crate::order::{IdempotencyKey, Order, OrderLine};
use crate::order_id::{OrderId, first_id_at};
use crate::product::Product;
use crate::sku::Sku;
use uuid::Uuid;

/// What a store operation can fail with.
#[derive(Debug, Error)]
pub enum StoreError {
    /// A uniqueness rule was broken (e.g. an idempotency key already used).
    #[error("conflict: {0}")]
    Conflict(String),
    /// Holding these orders' units would put a SKU's `reserved` above its `stock`: the store
    /// of record refuses to oversell whatever a cache said (the SKUs, as text).
    #[error("holds beyond stock refused for: {0}")]
    Oversold(String),
    /// An order would take a customer past a SKU's per-customer limit, counting their orders
    /// through every node: the store of record refuses it (the SKUs, as text).
    #[error("per-customer limit reached for: {0}")]
    LimitExceeded(String),
    /// The store cannot be reached or is shutting down; the caller may retry later.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Stored data that does not parse back into the domain (a bug or manual tampering).
    #[error("corrupt row: {0}")]
    Corrupt(String),
    /// Anything else from the backend.
    #[error("store backend error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<crate::product::StockBelowHeld> for StoreError {
    fn from(refused: crate::product::StockBelowHeld) -> Self {
        StoreError::Conflict(refused.to_string())
    }
}

/// An accepted order and the id of the `order.created` event to write with it, atomically.
///
/// The outbox row holds the event's id and routing key, not its body: the body is rebuilt
/// from the order ([`crate::OutboxEvent::order_created`]) when it is relayed, so each
/// commit writes the order's data once instead of twice.
#[derive(Debug, Clone)]
pub struct AcceptedOrder {
    /// The order.
    pub order: Order,
    /// The id of its `order.created` event; consumers deduplicate on it.
    pub event_id: Uuid,
}

/// A consumer's effect on an order, recorded together with "consumer X processed event E" so
/// that a redelivered event is recognised and causes no second effect.
#[derive(Debug, Clone)]
pub struct Effect {
    /// The consumer (queue) name.
    pub consumer: Arc<str>,
    /// The event being processed.
    pub event_id: Uuid,
    /// The order it is about.
    pub order_id: OrderId,
    /// What the consumer learned; `None` records processing only (notifications).
    pub fact: Option<Fact>,
    /// Why, for declines (carried into the emitted event).
    pub reason: Option<String>,
    /// Ids for the events this effect may emit (a transition emits at most two).
    pub new_event_ids: [Uuid; 2],
    /// When it happened.
    pub at: UnixMillis,
    /// Keys no queue is bound to: events of these keys are not emitted (no outbox row, no
    /// publish), since nobody would receive them — `payment.succeeded` in the default topology.
    pub unrouted: crate::event::RoutingKeys,
    /// With [`Fact::PaymentRequested`]: where the customer pays and by when, kept on the order
    /// when it starts awaiting payment.
    pub awaited_payment: Option<crate::order::AwaitedPayment>,
    /// The event may have been processed before: a redelivery, a retry, a replay, a callback
    /// the provider sends again, a deadline another node swept too. A store that records first
    /// deliveries the cheap way (PostgreSQL's plain `INSERT`, which a repeat fails and which
    /// is then done again) records a batch holding one of these the checked way at once.
    pub may_repeat: bool,
}

/// What [`OrderStore::apply_effects`] did with one effect.
#[derive(Debug, Clone)]
pub enum EffectOutcome {
    /// The consumer had processed this event before; nothing changed.
    AlreadyProcessed,
    /// No such order (a bug or a purged store); recorded as processed, nothing changed.
    OrderNotFound,
    /// An effect with no fact ([`Effect::records_only`]): recorded as processed; the order was
    /// neither read nor locked (a consumer that only tells someone must not queue behind the
    /// ones that change the order).
    Recorded,
    /// Applied.
    Applied {
        /// The order after the change.
        order: Order,
        /// Events written to the outbox in the same transaction, to publish now.
        emitted: Vec<OutboxEvent>,
        /// Lines whose units were given back and must be returned to the hot-stock cache.
        released: Vec<OrderLine>,
        /// Whether the visible status changed.
        status_changed: bool,
    },
}

/// Which orders an operator looks for ([`OrderStore::find_orders`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderFilter {
    /// Every order (the newest first, as always): what a dashboard lists as recent.
    Any,
    /// Orders with this status.
    Status(crate::order::OrderStatus),
    /// Cancelled orders whose payment arrived after all: money to give back.
    RefundRequired,
}

/// A page of orders for operators: those matching `filter`, created in `[since, until]`,
/// newest first, older than `before` (the previous page's last id) when given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderQuery {
    /// Which orders.
    pub filter: OrderFilter,
    /// Created at or after.
    pub since: UnixMillis,
    /// Created at or before.
    pub until: UnixMillis,
    /// The previous page's last id.
    pub before: Option<OrderId>,
    /// At most this many.
    pub limit: u32,
}

impl OrderQuery {
    /// The id range the query covers, `[low, high)`: ids are UUIDv7, so a creation-time window
    /// is an id range (`high` also stops below `before`). Stores bound their scan with it.
    pub fn id_range(&self) -> (Uuid, Uuid) {
        let high = first_id_at(UnixMillis(self.until.0.saturating_add(1)));
        let high = self.before.map_or(high, |b| b.as_uuid().min(high));
        (first_id_at(self.since), high)
    }
}

/// Durable storage of orders, outbox events and products.
#[async_trait]
pub trait OrderStore: Send + Sync + 'static {
    /// Writes every order of `batch` (shared, so a backend on another thread needs no copy), its outbox event, and adds its quantities to each
    /// product's `reserved` count, in ONE durable transaction: all or nothing. Returns only
    /// once the transaction is on disk (fsync'd).
    ///
    /// # Errors
    /// Any failure means nothing of the batch was written.
    async fn commit_orders(&self, batch: Arc<Vec<AcceptedOrder>>) -> Result<(), StoreError>;

    /// Whether `batch` is stored, asked after [`OrderStore::commit_orders`] failed in a way
    /// that leaves it unclear (the connection was lost, or cut off past its deadline, after
    /// the statement may have reached the database). A batch is atomic, so one order tells.
    ///
    /// A store whose commit may still be running on the server when the call has given up
    /// answers only once no transaction that could write the batch is in progress: a read
    /// alone could look just before that commit lands, and the caller would then give back
    /// units that are sold. The default reads the first order, which is right for a store
    /// whose calls end only when their transaction has.
    ///
    /// # Errors
    /// On a backend failure; the outcome stays unclear.
    async fn batch_stored(&self, batch: &[AcceptedOrder]) -> Result<bool, StoreError> {
        match batch.first() {
            Some(first) => Ok(self.get_order(first.order.id).await?.is_some()),
            None => Ok(false),
        }
    }

    /// Creates or replaces a product's name, price and stock, keeping its `reserved` count.
    /// Returns the product as stored and as it was before (`None` if new), read and written
    /// atomically, so the caller can move the hot-stock cache by the exact stock change even
    /// while consumers deduct stock of record.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] if the new stock is below what accepted orders hold
    /// (`reserved`); otherwise [`StoreError::Unavailable`] or [`StoreError::Backend`]. Nothing
    /// is written on error.
    async fn upsert_product(
        &self,
        product: &Product,
    ) -> Result<(Product, Option<Product>), StoreError>;

    /// One product, if it exists.
    ///
    /// # Errors
    /// On a backend failure.
    async fn get_product(&self, sku: &Sku) -> Result<Option<Product>, StoreError>;

    /// Every product, with its `reserved` count: the catalog and stock of record at start.
    ///
    /// # Errors
    /// On a backend failure.
    async fn load_products(&self) -> Result<Vec<Product>, StoreError>;

    /// One order by id.
    ///
    /// # Errors
    /// On a backend failure or a row that does not parse.
    async fn get_order(&self, id: OrderId) -> Result<Option<Order>, StoreError>;

    /// The order `customer` created with this idempotency key, if any. Keys are per
    /// customer: the same key from two customers names two requests.
    ///
    /// # Errors
    /// On a backend failure or a row that does not parse.
    async fn find_by_idempotency_key(
        &self,
        customer: &CustomerId,
        key: &IdempotencyKey,
    ) -> Result<Option<Order>, StoreError>;

    /// The orders these customers created with these idempotency keys, those that exist, in no
    /// particular order (each names its customer and key): a batch request's keys, read in one
    /// go rather than one round trip each.
    ///
    /// # Errors
    /// On a backend failure or a row that does not parse.
    async fn find_by_idempotency_keys(
        &self,
        keys: &[(CustomerId, IdempotencyKey)],
    ) -> Result<Vec<Order>, StoreError>;

    /// Frees an order's idempotency key once it has expired, so the key can name a new
    /// request; the order itself is untouched.
    ///
    /// # Errors
    /// On a backend failure.
    async fn forget_idempotency_key(&self, order: OrderId) -> Result<(), StoreError>;

    /// `customer`'s orders, newest first: at most `limit`, only those older than `before`
    /// when it is given (the previous page's last id).
    ///
    /// # Errors
    /// On a backend failure or a row that does not parse.
    async fn orders_of_customer(
        &self,
        customer: &CustomerId,
        before: Option<OrderId>,
        limit: u32,
    ) -> Result<Vec<Order>, StoreError>;

    /// Orders matching `query`, newest first (for operators: stuck or refund-owed orders). The
    /// store scans the query's id range newest first, so its cost grows with the window.
    ///
    /// # Errors
    /// On a backend failure or a row that does not parse.
    async fn find_orders(&self, query: OrderQuery) -> Result<Vec<Order>, StoreError>;

    /// Orders awaiting payment whose deadline (`pay_by`) is at or before `now`, earliest
    /// deadline first, at most `limit`: what the payment-deadline scheduler cancels.
    ///
    /// # Errors
    /// On a backend failure or a row that does not parse.
    async fn due_payments(&self, now: UnixMillis, limit: u32) -> Result<Vec<OrderId>, StoreError>;

    /// How many outbox events are stored and not yet relayed.
    ///
    /// # Errors
    /// On a backend failure.
    async fn outbox_len(&self) -> Result<u64, StoreError>;

    /// Applies consumers' effects in ONE transaction: for each, unless `(consumer, event)` is
    /// already recorded, runs the order state machine, updates the order, its product rows
    /// and history, writes emitted events to the outbox, and records `(consumer, event)`.
    ///
    /// # Errors
    /// Any failure means nothing of the batch was written (the deliveries will come again).
    async fn apply_effects(&self, effects: Vec<Effect>) -> Result<Vec<EffectOutcome>, StoreError>;

    /// Orders whose units an effect gave back in the store (their `EffectOutcome::Applied`
    /// has `released` lines) and that the hot-stock cache may not have back yet: the effect's
    /// transaction notes them (shared stores; see [`Self::overdue_stock_returns`]), and the
    /// node that applied it forgets them here once the cache took the units.
    ///
    /// # Errors
    /// On a backend failure; the notes stay, and end in a rebuild of the counts once overdue.
    async fn stock_returned(&self, orders: Vec<OrderId>) -> Result<(), StoreError>;

    /// Noted returns older than `age` (at most `limit`): a node that gave the units back in
    /// the store died, or lost the cache, before giving them back in the cache. Only a
    /// rebuild of the counts from the store can count them exactly (the cache may or may not
    /// have them). Stores whose cache is rebuilt at every start (embedded) note none.
    ///
    /// # Errors
    /// On a backend failure.
    async fn overdue_stock_returns(
        &self,
        age: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<OrderId>, StoreError>;

    /// Which of `events` `consumer` has already processed.
    ///
    /// # Errors
    /// On a backend failure.
    async fn processed(&self, consumer: &str, events: Vec<Uuid>) -> Result<Vec<Uuid>, StoreError>;

    /// Checks the store can take a write now (for readiness probes).
    ///
    /// # Errors
    /// When it cannot.
    async fn check_writable(&self) -> Result<(), StoreError>;
}
