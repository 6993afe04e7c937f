//! Heals lost hot-stock counts. A shared cache that restarts without its data, or is flushed,
//! loses every count at once; the cache then refuses to sell from it ([`CacheError::Lost`],
//! 503 at intake) rather than read a missing count as "sold out". This watchdog, on every node
//! that sells, notices the loss within `every`, and one node (holding the cache's rebuild
//! claim) sets every count again from the store of record once reservations made before the
//! loss have had `settle` to commit or be released.
//!
//! Why wait: a reservation taken just before the loss is in neither the rebuilt count nor the
//! store until its order commits; reading the store after it has committed counts it once.

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
}

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
    let products = store.load_products().await?;
    let counts = catalog::counts(&products);
    if cache.rebuild(Some(&settings.node), &counts).await? {
        Ok(Repair::Rebuilt(counts.len()))
    } else {
        Ok(Repair::OtherNode)
    }
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
