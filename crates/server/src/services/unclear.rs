//! Writes whose outcome is unclear: the store failed after the COMMIT may have reached the
//! database (a lost connection, a call cut off at its deadline). Nothing is given back until
//! the write is read back; see `OrderStore::batch_stored` and `DealStore::joined_order`.

use std::future::Future;
use std::time::{Duration, Instant};

use ordermill_core::ports::{StockCache, StoreError};

/// How long an unclear write is read back before it is answered as unknown.
pub const UNCLEAR_PATIENCE: Duration = Duration::from_secs(10);

/// Calls `read` until it answers, pausing 50 ms doubling to 2 s between failures, for at
/// most [`UNCLEAR_PATIENCE`]; then the last failure.
///
/// # Errors
/// The store stayed unreachable: the outcome is unknown, and the caller must not give back
/// what the write may have taken.
pub async fn read_back<T, F, Fut>(mut read: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, StoreError>>,
{
    let deadline = Instant::now() + UNCLEAR_PATIENCE;
    let mut pause = Duration::from_millis(50);
    loop {
        match read().await {
            Ok(found) => return Ok(found),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

/// After an outcome that stayed unknown: the units stay held (they may be sold), and the counts
/// are marked for a rebuild from the store, which counts them exactly — never an oversell, at
/// worst units off sale until the rebuild.
pub async fn recount_held_units(cache: &dyn StockCache) {
    if let Err(mark) = cache.mark_lost().await {
        tracing::error!(error = %mark, "Could not mark the hot-stock counts for a rebuild.");
    }
}
