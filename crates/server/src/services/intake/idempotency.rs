//! `Idempotency-Key`: a retried request gets the first response and writes nothing new.
//!
//! Keys are per customer (the same key from two customers names two requests) and expire
//! after `idempotency_ttl`, as payment APIs' keys do: a replay after that is a new request.
//! A key is claimed in memory for the time its request runs, so two concurrent requests with
//! one key never both reach the store (the second is told to retry). Completed keys are
//! remembered in a bounded cache; older ones are found in the store, where
//! `(customer, key)` is unique.
//!
//! A key the cache does not know is nearly always new, so a single order does not read the
//! store for it ([`Lookup::OnConflict`]): the store's uniqueness refuses a key it already
//! holds at the commit, and only a refused order reads the stored one ([`Idempotency::stored`]):
//! a retry of a stored order replays even when its SKU has sold out since.
//! Reading first cost every keyed order a store round trip on the request path: 0.56–0.65×
//! the orders/s of keyless ones embedded, 0.39–0.56× scaled out (docs/BENCHMARKS.md,
//! "Keyed orders"). A batch still reads first ([`Lookup::First`]): one order's collision
//! would fail its batch-mates' commit with it; its keys are read in one call
//! ([`Idempotency::stored_each`]).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;
use ordermill_core::ports::{OrderStore, StoreError};
use ordermill_core::{Clock, CustomerId, IdempotencyKey, Order, Quantity, Sku};

/// A key as one customer used it.
type Scoped = (CustomerId, IdempotencyKey);

/// When a key the cache does not know is looked for in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Before going on: a request whose orders commit together (a batch).
    First,
    /// Only if the commit finds the key taken: a single order.
    OnConflict,
}

/// How a keyed request may go on.
pub enum Begin {
    /// Seen before with the same request: answer with this order.
    Replay(Arc<Order>),
    /// Seen before with a different request.
    Mismatch,
    /// Another request with this key is running now.
    InProgress,
    /// New: go ahead; the claim holds until the guard is completed or dropped.
    Proceed(KeyClaim),
}

/// Remembers completed keys and claims running ones.
pub struct Idempotency {
    running: Arc<Mutex<HashSet<Scoped>>>,
    recent: Cache<Scoped, Arc<Order>>,
    store: Arc<dyn OrderStore>,
    ttl: Duration,
    clock: Arc<dyn Clock>,
}

impl Idempotency {
    /// Remembers up to `capacity` completed keys in memory; a key names its first request
    /// for `ttl` after that request's order was created.
    pub fn new(
        store: Arc<dyn OrderStore>,
        capacity: u64,
        ttl: Duration,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Idempotency { running: Arc::default(), recent: Cache::new(capacity), store, ttl, clock }
    }

    fn expired(&self, order: &Order) -> bool {
        let ttl = i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX);
        order.created_at.0.saturating_add(ttl) <= self.clock.now().0
    }

    /// Decides what a request carrying `key` should do.
    ///
    /// # Errors
    /// When the store cannot be read to look for an older use of the key, or an expired
    /// use of it cannot be unmarked.
    pub async fn begin(
        &self,
        key: &IdempotencyKey,
        customer: &CustomerId,
        items: &[(Sku, Quantity)],
        lookup: Lookup,
    ) -> Result<Begin, StoreError> {
        match self.claim(key, customer, items).await? {
            Begin::Proceed(claim) if lookup == Lookup::First => {
                Ok(self.stored(&claim).await?.unwrap_or(Begin::Proceed(claim)))
            }
            decided => Ok(decided),
        }
    }

    /// What this node's memory says of `key`: a remembered use decides, a running one is
    /// [`Begin::InProgress`], else the key is claimed for this request without reading the
    /// store ([`Lookup::OnConflict`]; a batch looks its claims up together with
    /// [`Idempotency::stored_each`]).
    ///
    /// # Errors
    /// When a remembered use past the TTL cannot be unmarked in the store.
    pub async fn claim(
        &self,
        key: &IdempotencyKey,
        customer: &CustomerId,
        items: &[(Sku, Quantity)],
    ) -> Result<Begin, StoreError> {
        let scoped = (customer.clone(), key.clone());
        let mut expired_order = None;
        if let Some(order) = self.recent.get(&scoped) {
            if !self.expired(&order) {
                return Ok(judge(order, customer, items));
            }
            self.recent.invalidate(&scoped);
            expired_order = Some(order.id);
        }
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if !running.insert(scoped.clone()) {
                return Ok(Begin::InProgress);
            }
        }
        let claim = KeyClaim { key: scoped, items: items.to_vec(), running: self.running.clone() };
        if let Some(order) = expired_order {
            // The key is free again: unmark the old order so the new one can carry it.
            self.store.forget_idempotency_key(order).await?;
        }
        Ok(Begin::Proceed(claim))
    }

    /// The stored use of `claim`'s key, judged against its request and remembered; `None`
    /// when the store holds none that counts (none, or one past the TTL, now unmarked). What
    /// a single order refused after [`Lookup::OnConflict`] is answered when it is `Some`: the
    /// refusal may be its key being taken, or a retry of a stored order meeting a sold-out SKU.
    ///
    /// # Errors
    /// When the store cannot be read or the expired use cannot be unmarked.
    pub async fn stored(&self, claim: &KeyClaim) -> Result<Option<Begin>, StoreError> {
        let (customer, key) = &claim.key;
        let found = self.store.find_by_idempotency_key(customer, key).await?;
        self.judge_stored(claim, found).await
    }

    /// [`Idempotency::stored`] for each of `claims` (a batch's), read from the store in one
    /// call: a batch of 1,000 new keys costs one round trip, not 1,000.
    ///
    /// # Errors
    /// When the store cannot be read or an expired use cannot be unmarked.
    pub async fn stored_each(
        &self,
        claims: &[&KeyClaim],
    ) -> Result<Vec<Option<Begin>>, StoreError> {
        let wanted: Vec<Scoped> = claims.iter().map(|claim| claim.key.clone()).collect();
        let mut found: HashMap<Scoped, Order> = HashMap::with_capacity(claims.len());
        for order in self.store.find_by_idempotency_keys(&wanted).await? {
            if let Some(key) = order.idempotency_key.clone() {
                found.insert((order.customer_id.clone(), key), order);
            }
        }
        let mut judged = Vec::with_capacity(claims.len());
        for claim in claims {
            judged.push(self.judge_stored(claim, found.remove(&claim.key)).await?);
        }
        Ok(judged)
    }

    async fn judge_stored(
        &self,
        claim: &KeyClaim,
        found: Option<Order>,
    ) -> Result<Option<Begin>, StoreError> {
        match found {
            Some(order) if self.expired(&order) => {
                self.store.forget_idempotency_key(order.id).await?;
                Ok(None)
            }
            Some(order) => {
                let order = Arc::new(order);
                self.recent.insert(claim.key.clone(), order.clone());
                Ok(Some(judge(order, &claim.key.0, &claim.items)))
            }
            None => Ok(None),
        }
    }

    /// Records that `claim`'s request created `order`, then releases the claim.
    pub fn complete(&self, claim: KeyClaim, order: Arc<Order>) {
        // Remember before releasing, so a retry never finds neither.
        self.recent.insert(claim.key.clone(), order);
        drop(claim);
    }
}

/// The same request again, or another one under the same key.
fn judge(order: Arc<Order>, customer: &CustomerId, items: &[(Sku, Quantity)]) -> Begin {
    if order.same_request(customer, items) { Begin::Replay(order) } else { Begin::Mismatch }
}

/// A key claimed by a running request, with what that request asks for; dropping it
/// releases the key.
pub struct KeyClaim {
    key: Scoped,
    items: Vec<(Sku, Quantity)>,
    running: Arc<Mutex<HashSet<Scoped>>>,
}

impl Drop for KeyClaim {
    fn drop(&mut self) {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}
