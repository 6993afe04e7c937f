//! `Idempotency-Key`: a retried request gets the first response and writes nothing new.
//!
//! A key is claimed in memory for the time its request runs, so two concurrent requests with
//! one key never both reach the store (the second is told to retry). Completed keys are
//! remembered in a bounded cache; older ones are found in the store, where the key is a
//! unique column of the order.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use moka::sync::Cache;
use ordermill_core::ports::{OrderStore, StoreError};
use ordermill_core::{CustomerId, IdempotencyKey, Order, Quantity, Sku};

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
    running: Arc<Mutex<HashSet<IdempotencyKey>>>,
    recent: Cache<IdempotencyKey, Arc<Order>>,
    store: Arc<dyn OrderStore>,
}

impl Idempotency {
    /// Remembers up to `capacity` completed keys in memory.
    pub fn new(store: Arc<dyn OrderStore>, capacity: u64) -> Self {
        Idempotency { running: Arc::default(), recent: Cache::new(capacity), store }
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
        if let Some(order) = self.recent.get(key) {
            return Ok(judge(order));
        }
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            if !running.insert(key.clone()) {
                return Ok(Begin::InProgress);
            }
        }
        let claim = KeyClaim { key: key.clone(), running: self.running.clone() };
        match self.store.find_by_idempotency_key(key).await? {
            Some(order) => {
                let order = Arc::new(order);
                self.recent.insert(key.clone(), order.clone());
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
    key: IdempotencyKey,
    running: Arc<Mutex<HashSet<IdempotencyKey>>>,
}

impl Drop for KeyClaim {
    fn drop(&mut self) {
        self.running.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.key);
    }
}
