//! Heals lost hot-stock counts. A shared cache that restarts without its data, or is flushed,
//! loses every count at once; the cache then refuses to sell from it ([`CacheError::Lost`],
//! 503 at intake) rather than read a missing count as "sold out". This watchdog, on every node
//! that sells, notices the loss within `every`, and one node (holding the cache's rebuild
//! claim) sets every count again from the store of record once reservations made before the
//! loss have had `settle` to commit or be released.
//!
//! Why wait: a reservation taken just before the loss is in neither the rebuilt count nor the
//! store until its order commits; reading the store after it has committed counts it once.
//!
//! It also ends units left out of the counts by a node killed between giving them back in the
//! store and in the cache: the store notes each such return with its effect and the node
//! forgets the note once the cache took the units (`adapters/workers/settle.rs`). A note older
//! than `return_grace` was left behind, and whether the cache got its units is unknown (the
//! node may have died just after giving them): only a rebuild from the store counts them
//! exactly, so the counts are marked lost. A rebuild forgets every note written before it read
//! the store, which has their units.

use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use ordermill_core::ports::{CacheError, OrderStore, StockCache};
use tokio_util::sync::CancellationToken;

use crate::services::catalog;
use crate::telemetry;

/// How the watchdog runs.
#[derive(Debug, Clone)]
pub struct RepairSettings {
    /// This node's name on the cache's rebuild claim.
    pub node: String,
    /// How often the counts are checked.
    pub every: Duration,
    /// How long reservations made before a loss get to commit or be released before the
    /// store is read.
    pub settle: Duration,
    /// How old a noted return must be to count as left behind.
    pub return_grace: Duration,
}

/// Notes forgotten per rebuild; more are left to the next one (each is one order).
const NOTES_PER_REBUILD: u32 = 10_000;

/// Checks the counts every `settings.every` until `stop`, rebuilding them when lost.
pub async fn watch(
    cache: Arc<dyn StockCache>,
    store: Arc<dyn OrderStore>,
    settings: RepairSettings,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(settings.every) => {}
        }
        if let Err(error) = mark_lost_if_returns_overdue(&*cache, &*store, &settings).await {
            tracing::warn!(node = %settings.node, error = %error, "Could not check for units given back in the store but not in the hot-stock cache; trying again.");
        }
        match repair_once(&*cache, &*store, &settings, &stop).await {
            Ok(Repair::Whole | Repair::OtherNode) => {}
            Ok(Repair::Rebuilt(skus)) => {
                counter!(telemetry::STOCK_REBUILDS).increment(1);
                tracing::warn!(node = %settings.node, skus, "Hot-stock counts were lost (cache restarted or flushed, or a node's lease lapsed); rebuilt them from the store. Selling resumes.");
            }
            Err(error) => {
                tracing::warn!(node = %settings.node, error = %error, "Could not check or rebuild the hot-stock counts; trying again.");
            }
        }
    }
}

/// Marks the counts lost when a noted return is older than `settings.return_grace`; the
/// check after it (at once) rebuilds them. `Ok(true)` when it marked them.
///
/// # Errors
/// When the store or the cache cannot be reached; the next check tries again.
pub async fn mark_lost_if_returns_overdue(
    cache: &dyn StockCache,
    store: &dyn OrderStore,
    settings: &RepairSettings,
) -> Result<bool, RepairError> {
    let overdue = store.overdue_stock_returns(settings.return_grace, 1).await?;
    let Some(order) = overdue.first() else { return Ok(false) };
    cache.mark_lost().await?;
    tracing::warn!(node = %settings.node, order_id = %order, grace_ms = settings.return_grace.as_millis() as u64, "Units given back in the store never reached the hot-stock counts (the node giving them back was killed or lost Redis); marked the counts for a rebuild from the store.");
    Ok(true)
}

/// What one check did.
#[derive(Debug, PartialEq, Eq)]
pub enum Repair {
    /// Nothing was lost.
    Whole,
    /// Lost, and another node holds the rebuild claim (or took it first).
    OtherNode,
    /// Lost, and this node rebuilt this many SKUs' counts.
    Rebuilt(usize),
}

/// Checks the counts once; when they are lost and this node wins the claim, waits
/// `settle` and rebuilds them from the store.
///
/// # Errors
/// When the cache or the store cannot be reached; the next check tries again.
pub async fn repair_once(
    cache: &dyn StockCache,
    store: &dyn OrderStore,
    settings: &RepairSettings,
    stop: &CancellationToken,
) -> Result<Repair, RepairError> {
    if cache.is_whole().await? {
        return Ok(Repair::Whole);
    }
    // The claim outlives the settle and the store read, so no second node starts meanwhile;
    // it expires by itself if this node dies mid-way.
    let lease = settings.settle + Duration::from_secs(10);
    if !cache.claim_rebuild(&settings.node, lease).await? {
        return Ok(Repair::OtherNode);
    }
    tracing::warn!(node = %settings.node, settle_ms = settings.settle.as_millis() as u64, "Hot-stock counts are lost; orders get 503 until they are rebuilt from the store.");
    tokio::select! {
        () = stop.cancelled() => return Ok(Repair::OtherNode),
        () = tokio::time::sleep(settings.settle) => {}
    }
    // Read before the products: every return noted by then is in what they say.
    let noted = store.overdue_stock_returns(Duration::ZERO, NOTES_PER_REBUILD).await?;
    let products = store.load_products().await?;
    let counts = catalog::counts(&products);
    if !cache.rebuild(Some(&settings.node), &counts).await? {
        return Ok(Repair::OtherNode);
    }
    if let Err(error) = store.stock_returned(noted).await {
        // Left, they end in one more rebuild once overdue: a few seconds of 503, no unit lost.
        tracing::warn!(node = %settings.node, error = %error, "Could not forget the stock returns this rebuild counted.");
    }
    Ok(Repair::Rebuilt(counts.len()))
}

/// Why a check could not finish.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    /// The cache failed.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] ordermill_core::ports::StoreError),
}
