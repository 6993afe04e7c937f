//! The hot-stock cache: units available to sell per SKU, reserved atomically at intake so a
//! flash sale is decided in memory and buyers who cannot win never reach the store.

use async_trait::async_trait;
use thiserror::Error;

use crate::order::OrderLine;
use crate::sku::Sku;

/// What a cache operation can fail with.
#[derive(Debug, Error)]
pub enum CacheError {
    /// Not enough units of this SKU; nothing was reserved.
    #[error("sku {sku} is out of stock")]
    OutOfStock {
        /// The first SKU found short.
        sku: Sku,
    },
    /// An adjustment would make the available count negative; nothing changed.
    #[error("sku {sku}: {requested} units would leave fewer than zero available ({available} now)")]
    Insufficient {
        /// The SKU.
        sku: Sku,
        /// The (negative) change asked for.
        requested: i64,
        /// Units available now.
        available: i64,
    },
    /// The cache cannot be reached.
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    /// The shared counts are gone (the cache restarted without its data, or was flushed):
    /// nothing may be sold from it until [`StockCache::rebuild`] has set them from the store.
    /// A missing count is never read as "sold out".
    #[error("the hot-stock counts were lost and are being rebuilt from the store")]
    Lost,
    /// Anything else from the backend.
    #[error("cache backend error")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Which full set of counts a reservation was taken from. Every time the counts are set
/// whole from the store (a rebuild after a loss, a reset when a node starts) they get a new,
/// larger epoch. That store read did not see the orders still uncommitted then, so it counted
/// their units free again: an order reserved under an older epoch than the counts' own must
/// not be written (its units are already back on sale), and one written anyway leaves the
/// counts offering its units twice until they are set again from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Epoch(u64);

impl Epoch {
    /// The epoch a cache that is never set anew under a reservation reports.
    pub const ONLY: Epoch = Epoch(0);

    /// The epoch numbered `n` by its cache.
    pub fn new(n: u64) -> Epoch {
        Epoch(n)
    }

    /// Its number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// Whether counts of this epoch can be set anew under a reservation at all (not those of a
    /// cache set whole only when its process starts): whether a write is worth checking.
    pub fn may_be_superseded(self) -> bool {
        self != Epoch::ONLY
    }

    /// Whether the counts of epoch `counts` were set from a store read that may have missed an
    /// order reserved under `self` (see [`Epoch`]).
    pub fn superseded_by(self, counts: Epoch) -> bool {
        counts > self
    }
}

/// Units available to sell, per SKU.
#[async_trait]
pub trait StockCache: Send + Sync + 'static {
    /// Takes `quantity` units of every line's SKU, all or none: either every line is
    /// reserved or nothing changed. Never makes a count negative, under any concurrency.
    /// Returns the [`Epoch`] of the counts it took them from.
    ///
    /// # Errors
    /// [`CacheError::OutOfStock`] naming a SKU that lacks units (or is unknown).
    async fn reserve(&self, lines: &[OrderLine]) -> Result<Epoch, CacheError>;

    /// Reserves each order's `lines` as [`StockCache::reserve`] does, in the order given (an
    /// earlier order takes units first); one answer per order. A batch request's orders: a
    /// cache behind a network round trip takes them in one call.
    ///
    /// The default, for a cache in this process: one reservation after the other.
    async fn reserve_each(&self, orders: &[&[OrderLine]]) -> Vec<Result<Epoch, CacheError>> {
        let mut answers = Vec::with_capacity(orders.len());
        for lines in orders {
            answers.push(self.reserve(lines).await);
        }
        answers
    }

    /// Gives back units taken by [`StockCache::reserve`] (a failed commit, a cancellation).
    ///
    /// # Errors
    /// On a backend failure.
    async fn release(&self, lines: &[OrderLine]) -> Result<(), CacheError>;

    /// Adds `delta` (possibly negative) to a SKU's available units, creating the SKU at 0
    /// first if unknown. Returns the new count.
    ///
    /// # Errors
    /// [`CacheError::Insufficient`] if the result would be negative; nothing changed.
    async fn adjust(&self, sku: &Sku, delta: i64) -> Result<i64, CacheError>;

    /// Whether the counts are whole: set by [`StockCache::rebuild`] or
    /// [`StockCache::join_shared`] and not lost since. While they are not, reservations and
    /// adjustments answer [`CacheError::Lost`] and releases change nothing (the rebuild counts
    /// from the store, which knows which orders were committed).
    ///
    /// The default, for a cache that cannot lose its counts without its process: always.
    ///
    /// # Errors
    /// On a backend failure.
    async fn is_whole(&self) -> Result<bool, CacheError> {
        Ok(true)
    }

    /// After orders reserved under `reserved_under` were written (or may have been): if the
    /// counts have been set anew since ([`Epoch::superseded_by`]), marks them lost, in the same
    /// atomic step, so they are rebuilt from the store — the read that set them may have missed
    /// those orders, and would then offer their units twice. Returns the counts' epoch as found,
    /// `None` when they were lost already (the rebuild to come reads the store afresh).
    ///
    /// The default, for a cache set whole only when its process starts: nothing to do.
    ///
    /// # Errors
    /// On a backend failure.
    async fn recount_if_superseded(
        &self,
        reserved_under: Epoch,
    ) -> Result<Option<Epoch>, CacheError> {
        let _ = reserved_under;
        Ok(Some(Epoch::ONLY))
    }

    /// Claims the right to rebuild lost counts for `lease`, as `node`; `false` if another node
    /// holds it. Nodes sharing the cache respect the claim, so one rebuild runs at a time.
    ///
    /// # Errors
    /// On a backend failure.
    async fn claim_rebuild(
        &self,
        node: &str,
        lease: std::time::Duration,
    ) -> Result<bool, CacheError> {
        let _ = (node, lease);
        Ok(true)
    }

    /// Sets every count from `counts` (`stock − reserved` per SKU, read from the store) and
    /// marks the cache whole, in one atomic step. With `owner`, only while that node still
    /// holds the claim of [`StockCache::claim_rebuild`] (which it then gives up); returns
    /// whether it rebuilt. Without, unconditionally (one process owns the cache).
    ///
    /// # Errors
    /// On a backend failure.
    async fn rebuild(&self, owner: Option<&str>, counts: &[(Sku, i64)])
    -> Result<bool, CacheError>;

    /// Sets a SKU's available units only if the cache has no count for it, atomically;
    /// returns whether it set one. Nodes sharing a cache reconcile with this on start: a count
    /// that exists is the live one (other nodes' reservations in flight are in it, not yet in
    /// the store), a missing one (the cache lost its data) is rebuilt from the store.
    ///
    /// # Errors
    /// On a backend failure.
    async fn set_available_if_absent(&self, sku: &Sku, available: i64) -> Result<bool, CacheError>;

    /// Brings a cache SHARED by several api nodes in line with the store when node `node`
    /// starts, and counts the node in: if no other node is live, every count is set from
    /// `counts` (`stock − reserved` per SKU), which also frees units a crashed node had reserved
    /// and never committed; if another node is live, only missing counts are set (a live count
    /// holds that node's reservations in flight, which the store does not show yet). Both, and
    /// the joining, are one atomic step, so two nodes starting together cannot both reset.
    /// The node stays live for `ttl` unless [`StockCache::heartbeat`] renews it. Returns
    /// whether it reset every count.
    ///
    /// Lost counts (see [`StockCache::is_whole`]) are reset as if no node were live.
    ///
    /// The default, for a cache only one process uses: set every count.
    ///
    /// # Errors
    /// On a backend failure.
    async fn join_shared(
        &self,
        node: &str,
        counts: &[(Sku, i64)],
        ttl: std::time::Duration,
    ) -> Result<bool, CacheError> {
        let _ = (node, ttl);
        self.rebuild(None, counts).await
    }

    /// Marks the counts lost ([`StockCache::is_whole`] turns false) so they are rebuilt from
    /// the store: called when the store refused holds the cache had granted, i.e. a count was
    /// higher than the store's `stock − reserved`.
    ///
    /// The default, for a cache rebuilt only at start: nothing.
    ///
    /// # Errors
    /// On a backend failure.
    async fn mark_lost(&self) -> Result<(), CacheError> {
        Ok(())
    }

    /// Keeps `node` live for another `ttl` (see [`StockCache::join_shared`]). Nodes whose
    /// lease ran out (killed, or cut off) are dropped, and since their reservations in flight
    /// may never commit, the counts are marked lost ([`StockCache::is_whole`]) to be rebuilt
    /// from the store. Returns how many nodes it dropped.
    ///
    /// # Errors
    /// On a backend failure.
    async fn heartbeat(&self, node: &str, ttl: std::time::Duration) -> Result<u64, CacheError> {
        let _ = (node, ttl);
        Ok(0)
    }

    /// Counts `node` out at once (a graceful stop), so a node starting next may reset.
    ///
    /// # Errors
    /// On a backend failure.
    async fn leave(&self, node: &str) -> Result<(), CacheError> {
        let _ = node;
        Ok(())
    }

    /// A SKU's available units, `None` if unknown.
    ///
    /// # Errors
    /// On a backend failure.
    async fn available(&self, sku: &Sku) -> Result<Option<i64>, CacheError>;
}
