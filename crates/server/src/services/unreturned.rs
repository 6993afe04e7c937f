//! Units a node could not give back to the shared hot-stock counts.
//!
//! A release (a failed or refused order, a refused deal join, a cancelled or declined order's
//! units) that does not reach the cache leaves its units out of the count while the store of
//! record has them back: they would not be sold again until the counts were next rebuilt,
//! which nothing asked for. [`ReturnsOwed`] wraps the cache: a release that fails is noted, and
//! once the cache answers again the counts are marked lost, so the nodes' repair watchdog
//! (`stock_repair.rs`) rebuilds them from the store, which counts the units exactly. Retrying
//! the release itself could count its units twice (the reply may have been lost after it was
//! applied, or a rebuild may have counted them meanwhile); a rebuild cannot.
//!
//! The same goes for the check after a commit of whether the counts were set anew since its
//! orders reserved their units (`epoch_check.rs`): one that cannot reach the cache ends in a
//! rebuild once it answers, since those units may be counted twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use ordermill_core::ports::{CacheError, Epoch, StockCache};
use ordermill_core::{OrderLine, Sku};

/// A shared stock cache whose failed releases (and failed checks after a commit) end in a
/// rebuild of the counts.
///
/// Every method goes to the wrapped cache, the defaulted ones too (a method left to the trait's
/// default here would silently skip the cache's own).
pub struct ReturnsOwed {
    inner: Arc<dyn StockCache>,
    owed: AtomicBool,
}

impl ReturnsOwed {
    /// Wraps `inner` and, while the wrapper lives, checks every `every` whether a release failed
    /// since the last check; if so, marks the counts lost as soon as the cache takes it.
    pub fn wrap(inner: Arc<dyn StockCache>, every: Duration) -> Arc<ReturnsOwed> {
        let cache = Arc::new(ReturnsOwed { inner, owed: AtomicBool::new(false) });
        tokio::spawn(settle(Arc::downgrade(&cache), every));
        cache
    }

    /// Whether a failed release still waits for the counts to be marked lost.
    pub fn owes(&self) -> bool {
        self.owed.load(Ordering::SeqCst)
    }

    /// Marks the counts lost if a release failed since the last call; `Ok(true)` if it did.
    ///
    /// # Errors
    /// The cache still cannot be reached: the debt stays, for the next call.
    pub async fn settle_once(&self) -> Result<bool, CacheError> {
        if !self.owed.swap(false, Ordering::SeqCst) {
            return Ok(false);
        }
        match self.inner.mark_lost().await {
            Ok(()) => {
                tracing::warn!(
                    "Units this node could not give back to the hot-stock cache are counted again: marked the counts for a rebuild from the store."
                );
                Ok(true)
            }
            Err(error) => {
                self.owed.store(true, Ordering::SeqCst);
                Err(error)
            }
        }
    }
}

async fn settle(cache: Weak<ReturnsOwed>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(cache) = cache.upgrade() else { break };
        // A failure is logged where the release failed; this retries quietly.
        let _ = cache.settle_once().await;
    }
}

#[async_trait]
impl StockCache for ReturnsOwed {
    async fn reserve(&self, lines: &[OrderLine]) -> Result<Epoch, CacheError> {
        self.inner.reserve(lines).await
    }

    async fn reserve_each(&self, orders: &[&[OrderLine]]) -> Vec<Result<Epoch, CacheError>> {
        self.inner.reserve_each(orders).await
    }

    async fn recount_if_superseded(
        &self,
        reserved_under: Epoch,
    ) -> Result<Option<Epoch>, CacheError> {
        let checked = self.inner.recount_if_superseded(reserved_under).await;
        // Not knowing whether written orders' units are counted twice: recounted all the same.
        if matches!(checked, Err(CacheError::Unavailable(_) | CacheError::Backend(_))) {
            self.owed.store(true, Ordering::SeqCst);
        }
        checked
    }

    async fn release(&self, lines: &[OrderLine]) -> Result<(), CacheError> {
        let released = self.inner.release(lines).await;
        // `Lost`: the rebuild under way counts these units from the store already.
        if matches!(released, Err(CacheError::Unavailable(_) | CacheError::Backend(_))) {
            self.owed.store(true, Ordering::SeqCst);
        }
        released
    }

    async fn adjust(&self, sku: &Sku, delta: i64) -> Result<i64, CacheError> {
        self.inner.adjust(sku, delta).await
    }

    async fn is_whole(&self) -> Result<bool, CacheError> {
        self.inner.is_whole().await
    }

    async fn claim_rebuild(&self, node: &str, lease: Duration) -> Result<bool, CacheError> {
        self.inner.claim_rebuild(node, lease).await
    }

    async fn rebuild(
        &self,
        owner: Option<&str>,
        counts: &[(Sku, i64)],
    ) -> Result<bool, CacheError> {
        self.inner.rebuild(owner, counts).await
    }

    async fn set_available_if_absent(&self, sku: &Sku, available: i64) -> Result<bool, CacheError> {
        self.inner.set_available_if_absent(sku, available).await
    }

    async fn join_shared(
        &self,
        node: &str,
        counts: &[(Sku, i64)],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        self.inner.join_shared(node, counts, ttl).await
    }

    async fn mark_lost(&self) -> Result<(), CacheError> {
        self.inner.mark_lost().await
    }

    async fn heartbeat(&self, node: &str, ttl: Duration) -> Result<u64, CacheError> {
        self.inner.heartbeat(node, ttl).await
    }

    async fn leave(&self, node: &str) -> Result<(), CacheError> {
        self.inner.leave(node).await
    }

    async fn available(&self, sku: &Sku) -> Result<Option<i64>, CacheError> {
        self.inner.available(sku).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use std::sync::atomic::AtomicUsize;

    use ordermill_core::{Money, Quantity};

    use super::*;

    /// What the wrapper asks of a cache: releases that fail while `down`, and `mark_lost`
    /// calls counted (refused while `down`).
    #[derive(Default)]
    struct Flaky {
        down: AtomicBool,
        marked: AtomicUsize,
    }

    #[async_trait]
    impl StockCache for Flaky {
        async fn reserve(&self, _: &[OrderLine]) -> Result<Epoch, CacheError> {
            Ok(Epoch::ONLY)
        }
        async fn release(&self, _: &[OrderLine]) -> Result<(), CacheError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(CacheError::Unavailable("connection refused".into()));
            }
            Ok(())
        }
        async fn adjust(&self, _: &Sku, delta: i64) -> Result<i64, CacheError> {
            Ok(delta)
        }
        async fn rebuild(&self, _: Option<&str>, _: &[(Sku, i64)]) -> Result<bool, CacheError> {
            Ok(true)
        }
        async fn set_available_if_absent(&self, _: &Sku, _: i64) -> Result<bool, CacheError> {
            Ok(true)
        }
        async fn mark_lost(&self) -> Result<(), CacheError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(CacheError::Unavailable("connection refused".into()));
            }
            self.marked.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
        async fn available(&self, _: &Sku) -> Result<Option<i64>, CacheError> {
            Ok(None)
        }
    }

    fn lines() -> Vec<OrderLine> {
        let price = Money::parse("price", "1.00").unwrap();
        vec![OrderLine::priced(Sku::parse("tea").unwrap(), Quantity::ONE, price).unwrap()]
    }

    #[tokio::test]
    async fn a_failed_release_marks_the_counts_lost_once_the_cache_answers() {
        let flaky = Arc::new(Flaky::default());
        let cache = ReturnsOwed::wrap(flaky.clone(), Duration::from_secs(3_600));
        cache.release(&lines()).await.unwrap();
        assert!(!cache.settle_once().await.unwrap(), "a release that landed owes nothing");

        flaky.down.store(true, Ordering::SeqCst);
        assert!(cache.release(&lines()).await.is_err());
        assert!(cache.owes());
        assert!(cache.settle_once().await.is_err(), "the cache is still down");
        assert!(cache.owes(), "the debt waits for the cache");
        assert_eq!(flaky.marked.load(Ordering::SeqCst), 0);

        flaky.down.store(false, Ordering::SeqCst);
        assert!(cache.settle_once().await.unwrap());
        assert_eq!(flaky.marked.load(Ordering::SeqCst), 1, "marked lost once");
        assert!(!cache.owes());
        assert!(!cache.settle_once().await.unwrap(), "and only once");
    }

    #[tokio::test(start_paused = true)]
    async fn the_debt_is_settled_on_its_own_while_the_wrapper_lives() {
        let flaky = Arc::new(Flaky::default());
        let cache = ReturnsOwed::wrap(flaky.clone(), Duration::from_millis(100));
        flaky.down.store(true, Ordering::SeqCst);
        assert!(cache.release(&lines()).await.is_err());
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(cache.owes(), "still down: nothing marked");
        flaky.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(flaky.marked.load(Ordering::SeqCst), 1);
        assert!(!cache.owes());
    }
}
