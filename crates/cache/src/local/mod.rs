//! In-process hot stock: one `AtomicI64` per SKU.
//!
//! Reservation is a compare-and-swap loop per line that never goes below zero; a multi-line
//! order that finds one line short gives back the lines it already took. So no count is ever
//! negative and an order gets all its lines or none. A concurrent buyer may, for the
//! microseconds of that give-back, see units as taken that end up free again: the same as if
//! the order had been placed and cancelled, and never an oversell.

mod orders;
mod rate_limit;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use ordermill_core::ports::{CacheError, Epoch, StockCache};
use ordermill_core::{OrderLine, Sku};

pub use self::orders::LocalOrderCache;
pub use self::rate_limit::LocalRateLimiter;

/// Per-SKU counters behind a read-mostly map: the map is written only when a SKU is created,
/// so intake takes only the read lock and then works on atomics.
#[derive(Debug, Default)]
pub struct LocalStockCache {
    counters: RwLock<HashMap<Sku, Arc<AtomicI64>>>,
}

impl LocalStockCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    fn counter(&self, sku: &Sku) -> Option<Arc<AtomicI64>> {
        // A poisoned lock means a panic while inserting a SKU; the map itself is still valid.
        let map = self.counters.read().unwrap_or_else(|p| p.into_inner());
        map.get(sku).cloned()
    }

    fn counter_or_create(&self, sku: &Sku) -> Arc<AtomicI64> {
        if let Some(c) = self.counter(sku) {
            return c;
        }
        let mut map = self.counters.write().unwrap_or_else(|p| p.into_inner());
        map.entry(sku.clone()).or_default().clone()
    }

    /// Takes `n` units if at least `n` are there.
    fn take(counter: &AtomicI64, n: i64) -> bool {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |have| {
                (have >= n).then_some(have - n)
            })
            .is_ok()
    }

    fn reserve_now(&self, lines: &[OrderLine]) -> Result<(), CacheError> {
        let map = self.counters.read().unwrap_or_else(|p| p.into_inner());
        for (taken, line) in lines.iter().enumerate() {
            let ok =
                map.get(&line.sku).is_some_and(|c| Self::take(c, i64::from(line.quantity.get())));
            if !ok {
                for back in &lines[..taken] {
                    if let Some(c) = map.get(&back.sku) {
                        c.fetch_add(i64::from(back.quantity.get()), Ordering::AcqRel);
                    }
                }
                return Err(CacheError::OutOfStock { sku: line.sku.clone() });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl StockCache for LocalStockCache {
    async fn reserve(&self, lines: &[OrderLine]) -> Result<Epoch, CacheError> {
        self.reserve_now(lines).map(|()| Epoch::ONLY)
    }

    async fn release(&self, lines: &[OrderLine]) -> Result<(), CacheError> {
        for line in lines {
            self.counter_or_create(&line.sku)
                .fetch_add(i64::from(line.quantity.get()), Ordering::AcqRel);
        }
        Ok(())
    }

    async fn adjust(&self, sku: &Sku, delta: i64) -> Result<i64, CacheError> {
        let counter = self.counter_or_create(sku);
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |have| {
                have.checked_add(delta).filter(|new| *new >= 0)
            })
            .map(|old| old + delta)
            .map_err(|have| CacheError::Insufficient {
                sku: sku.clone(),
                requested: delta,
                available: have,
            })
    }

    async fn rebuild(
        &self,
        _owner: Option<&str>,
        counts: &[(Sku, i64)],
    ) -> Result<bool, CacheError> {
        for (sku, available) in counts {
            self.counter_or_create(sku).store(*available, Ordering::Release);
        }
        Ok(true)
    }

    async fn set_available_if_absent(&self, sku: &Sku, available: i64) -> Result<bool, CacheError> {
        if self.counter(sku).is_some() {
            return Ok(false);
        }
        // Created at 0 by a racing caller at worst; only a fresh counter is set.
        let counter = self.counter_or_create(sku);
        Ok(counter.compare_exchange(0, available, Ordering::AcqRel, Ordering::Acquire).is_ok())
    }

    async fn available(&self, sku: &Sku) -> Result<Option<i64>, CacheError> {
        Ok(self.counter(sku).map(|c| c.load(Ordering::Acquire)))
    }
}
