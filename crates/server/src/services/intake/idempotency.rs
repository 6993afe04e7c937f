//! `Idempotency-Key`: a retried request gets the first response and writes nothing new.
//!
//! Keys are per customer (the same key from two customers names two requests) and expire
//! after `idempotency_ttl`, as payment APIs' keys do: a replay after that is a new request.
//! A key is claimed in memory for the time its request runs, so two concurrent requests with
//! one key never both reach the store (the second is told to retry). Completed keys are
//! remembered in a bounded cache; older ones are found in the store, where
//! `(customer, key)` is unique.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;
use ordermill_core::ports::{OrderStore, StoreError};
use ordermill_core::{Clock, CustomerId, IdempotencyKey, Order, Quantity, Sku};

/// A key as one customer used it.
type Scoped = (CustomerId, IdempotencyKey);

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
    /// When the store cannot be read to look for an older use of the key.
    pub async fn begin(
        &self,
        key: &IdempotencyKey,
        customer: &CustomerId,
        items: &[(Sku, Quantity)],
    ) -> Result<Begin, StoreError> {
        let judge = |order: Arc<Order>| {
            if order.same_request(customer, items) { Begin::Replay(order) } else { Begin::Mismatch }
        };
        let scoped = (customer.clone(), key.clone());
        if let Some(order) = self.recent.get(&scoped) {
            if !self.expired(&order) {
                return Ok(judge(order));
            }
            self.recent.invalidate(&scoped);
        }
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if !running.insert(scoped.clone()) {
                return Ok(Begin::InProgress);
            }
        }
        let claim = KeyClaim { key: scoped.clone(), running: self.running.clone() };
        match self.store.find_by_idempotency_key(customer, key).await? {
            Some(order) if self.expired(&order) => {
                // The key is free again: unmark the old order so the new one can carry it.
                self.store.forget_idempotency_key(order.id).await?;
                Ok(Begin::Proceed(claim))
            }
            Some(order) => {
                let order = Arc::new(order);
                self.recent.insert(scoped, order.clone());
                Ok(judge(order))
            }
            None => Ok(Begin::Proceed(claim)),
        }
    }

    /// Records that `claim`'s request created `order`, then releases the claim.
    pub fn complete(&self, claim: KeyClaim, order: Arc<Order>) {
        // Remember before releasing, so a retry never finds neither.
        self.recent.insert(claim.key.clone(), order);
        drop(claim);
    }
}

/// A key claimed by a running request; dropping it releases the key.
pub struct KeyClaim {
    key: Scoped,
    running: Arc<Mutex<HashSet<Scoped>>>,
}

impl Drop for KeyClaim {
    fn drop(&mut self) {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}
