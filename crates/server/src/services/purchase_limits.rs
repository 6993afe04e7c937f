//! Flash-sale purchase limits: at most N units of a SKU per customer, for orders and deal
//! joins alike, enforced at intake in memory so it holds under any concurrency on this node.
//!
//! A customer's count for a SKU goes up when an order is taken (before stock is reserved)
//! and comes back when the order is refused, its commit fails, or it is later cancelled. On
//! start the counts are rebuilt from the store (units in orders not cancelled), so a restart
//! neither forgets nor double-counts.
//!
//! Scaled out ([`PurchaseLimits::counted_by_store`]) nothing is counted here: each api node
//! would count alone (a customer could buy the limit through every node) and a cancellation
//! handled by a worker would never reach the api nodes' counts. PostgreSQL counts instead, in
//! the group commit and the deal join (migration 0006), for every node at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use ordermill_core::ports::{LimitStore, StoreError};
use ordermill_core::{CustomerId, OrderLine, Sku};

/// The largest per-customer limit.
pub const MAX_LIMIT: u32 = 1_000_000;

/// A customer would exceed a SKU's limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("customer may buy at most {limit} units of {sku} and already holds {held}")]
pub struct LimitExceeded {
    /// The SKU.
    pub sku: Sku,
    /// Its per-customer limit.
    pub limit: u32,
    /// Units the customer already holds.
    pub held: u64,
}

type Counts = HashMap<(Sku, CustomerId), u64>;

/// Limits per SKU and units held per (SKU, customer).
pub struct PurchaseLimits {
    limits: RwLock<HashMap<Sku, u32>>,
    // Lets intake skip every lock when no SKU has a limit (the common case).
    any: AtomicBool,
    /// The store counts and refuses (scaled out): `take` and `give_back` do nothing.
    store_counts: AtomicBool,
    held: Mutex<Counts>,
    store: Arc<dyn LimitStore>,
}

/// Units taken for one order; given back on drop unless [`LimitHold::keep`] is called, so
/// every early return of intake gives them back by itself.
#[must_use = "dropping a hold gives its units back"]
pub struct LimitHold {
    limits: Option<Arc<PurchaseLimits>>,
    customer: Option<CustomerId>,
    taken: Vec<(Sku, u64)>,
}

impl LimitHold {
    /// A hold of nothing (no line had a limit).
    fn none() -> Self {
        LimitHold { limits: None, customer: None, taken: Vec::new() }
    }

    /// Whether it holds no units (no line of the order has a limit on this node).
    pub fn holds_nothing(&self) -> bool {
        self.taken.is_empty()
    }

    /// The order is durable: its units stay counted (until it is cancelled).
    pub fn keep(mut self) {
        self.taken.clear();
    }
}

impl Drop for LimitHold {
    fn drop(&mut self) {
        if let (Some(limits), Some(customer)) = (&self.limits, &self.customer)
            && !self.taken.is_empty()
        {
            limits.give_back_units(customer, &self.taken);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Poisoning needs a panic while holding the lock; the map stays consistent between
    // statements, so keep going.
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl PurchaseLimits {
    /// Leaves counting to the store of record, which enforces every limit for all nodes at
    /// once (PostgreSQL, 0006); the limits are still kept here for views.
    #[must_use]
    pub fn counted_by_store(self) -> Self {
        lock(&self.held).clear();
        self.store_counts.store(true, Ordering::Relaxed);
        self
    }

    /// Loads the limits and rebuilds each limited SKU's counts from the store.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub async fn load(store: Arc<dyn LimitStore>) -> Result<PurchaseLimits, StoreError> {
        let limits: HashMap<Sku, u32> = store.purchase_limits().await?.into_iter().collect();
        let mut held = Counts::new();
        for sku in limits.keys() {
            for (customer, units) in store.units_by_customer(sku).await? {
                held.insert((sku.clone(), customer), units);
            }
        }
        if !limits.is_empty() {
            tracing::info!(skus = limits.len(), "Loaded per-customer purchase limits.");
        }
        Ok(PurchaseLimits {
            any: AtomicBool::new(!limits.is_empty()),
            store_counts: AtomicBool::new(false),
            limits: RwLock::new(limits),
            held: Mutex::new(held),
            store,
        })
    }

    /// A SKU's limit, if it has one.
    pub fn limit(&self, sku: &Sku) -> Option<u32> {
        self.limits.read().unwrap_or_else(|p| p.into_inner()).get(sku).copied()
    }

    /// Sets or removes a SKU's limit, durably, and recounts what customers hold of it.
    ///
    /// # Errors
    /// When the store cannot be written or read; the limit in memory is then unchanged.
    pub async fn set(&self, sku: &Sku, limit: Option<u32>) -> Result<(), StoreError> {
        // Written whatever this node holds: with several api nodes, another may have changed
        // the stored limit since this node last loaded it, so "unchanged here" proves nothing.
        self.store.set_purchase_limit(sku, limit).await?;
        if self.limit(sku) == limit {
            return Ok(());
        }
        let counts = match limit {
            Some(_) => self.store.units_by_customer(sku).await?,
            None => Vec::new(),
        };
        {
            let mut held = lock(&self.held);
            held.retain(|(s, _), _| s != sku);
            for (customer, units) in counts {
                held.insert((sku.clone(), customer), units);
            }
        }
        let mut limits = self.limits.write().unwrap_or_else(|p| p.into_inner());
        match limit {
            Some(limit) => limits.insert(sku.clone(), limit),
            None => limits.remove(sku),
        };
        self.any.store(!limits.is_empty(), Ordering::Release);
        tracing::info!(sku = %sku, per_customer_limit = limit, "Purchase limit saved.");
        Ok(())
    }

    /// Reloads the limits from the store when the store counts (scaled out): a limit set or
    /// removed through another api node then shows here (`GET /api/products/{sku}`) too. The
    /// store enforces them either way; on a single node this one's memory is the truth.
    ///
    /// # Errors
    /// When the store cannot be read; the limits here stay as they were.
    pub async fn refresh(&self) -> Result<(), StoreError> {
        if !self.store_counts.load(Ordering::Relaxed) {
            return Ok(());
        }
        let fresh: HashMap<Sku, u32> = self.store.purchase_limits().await?.into_iter().collect();
        let mut limits = self.limits.write().unwrap_or_else(|p| p.into_inner());
        if *limits != fresh {
            *limits = fresh;
            self.any.store(!limits.is_empty(), Ordering::Release);
        }
        Ok(())
    }

    /// Counts `lines` against `customer`'s limits, all or nothing.
    ///
    /// # Errors
    /// [`LimitExceeded`] for the first line over its limit; nothing is counted then.
    pub fn take(
        self: &Arc<Self>,
        customer: &CustomerId,
        lines: &[OrderLine],
    ) -> Result<LimitHold, LimitExceeded> {
        if !self.any.load(Ordering::Acquire) || self.store_counts.load(Ordering::Relaxed) {
            return Ok(LimitHold::none());
        }
        let limited: Vec<(Sku, u64, u32)> = {
            let limits = self.limits.read().unwrap_or_else(|p| p.into_inner());
            lines
                .iter()
                .filter_map(|l| {
                    limits.get(&l.sku).map(|n| (l.sku.clone(), u64::from(l.quantity.get()), *n))
                })
                .collect()
        };
        if limited.is_empty() {
            return Ok(LimitHold::none());
        }
        let mut held = lock(&self.held);
        for (sku, units, limit) in &limited {
            let now = held.get(&(sku.clone(), customer.clone())).copied().unwrap_or(0);
            if now + units > u64::from(*limit) {
                return Err(LimitExceeded { sku: sku.clone(), limit: *limit, held: now });
            }
        }
        let mut taken = Vec::with_capacity(limited.len());
        for (sku, units, _) in limited {
            *held.entry((sku.clone(), customer.clone())).or_default() += units;
            taken.push((sku, units));
        }
        Ok(LimitHold { limits: Some(self.clone()), customer: Some(customer.clone()), taken })
    }

    /// Gives back the units of a cancelled order.
    pub fn give_back(&self, customer: &CustomerId, lines: &[OrderLine]) {
        if !self.any.load(Ordering::Acquire) || self.store_counts.load(Ordering::Relaxed) {
            return;
        }
        let units: Vec<(Sku, u64)> =
            lines.iter().map(|l| (l.sku.clone(), u64::from(l.quantity.get()))).collect();
        self.give_back_units(customer, &units);
    }

    fn give_back_units(&self, customer: &CustomerId, units: &[(Sku, u64)]) {
        let mut held = lock(&self.held);
        for (sku, n) in units {
            let key = (sku.clone(), customer.clone());
            if let Some(count) = held.get_mut(&key) {
                *count = count.saturating_sub(*n);
                if *count == 0 {
                    held.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use ordermill_core::ports::OrderStore;

    use super::*;

    #[tokio::test]
    async fn a_limit_set_through_a_node_that_already_held_it_still_reaches_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ordermill_store::SqliteStore::open(dir.path()).unwrap());
        let sku = Sku::parse("flash").unwrap();
        store
            .upsert_product(&ordermill_store::contract::product_for_tests("flash", 10))
            .await
            .unwrap();
        let first = PurchaseLimits::load(store.clone()).await.unwrap();
        first.set(&sku, Some(1)).await.unwrap();
        // Two nodes that both loaded the limit of 1; one lifts it.
        let (a, b) = (
            PurchaseLimits::load(store.clone()).await.unwrap(),
            PurchaseLimits::load(store.clone()).await.unwrap(),
        );
        a.set(&sku, None).await.unwrap();
        // The other, not refreshed yet, is asked for 1 again: the store must say 1.
        b.set(&sku, Some(1)).await.unwrap();
        let fresh = PurchaseLimits::load(store.clone()).await.unwrap();
        assert_eq!(fresh.limit(&sku), Some(1));
    }
}
