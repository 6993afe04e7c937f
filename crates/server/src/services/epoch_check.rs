//! After orders were written (or may have been): whether the shared counts were set anew from
//! the store since their units were reserved, in which case that read may have missed them
//! and the counts offer those units twice (see [`Epoch`] and `lease.rs`). The check is one
//! atomic cache call that also marks the counts lost when they were; it runs beside the
//! committer, never in front of an answer: the orders stand whatever it finds.

use std::sync::Arc;

use metrics::counter;
use ordermill_core::ports::{Epoch, StockCache};

use super::lease::Lease;
use crate::telemetry;

/// Checks, in a task of its own, the counts against `reserved_under` (the oldest epoch of the
/// written orders' reservations), marking them for a rebuild from the store if they were set
/// anew since; notes the epoch found in `lease`. Nothing to check for counts that are never set
/// anew under a reservation ([`Epoch::may_be_superseded`]).
pub fn recount_if_superseded(
    cache: &Arc<dyn StockCache>,
    lease: &Arc<Lease>,
    reserved_under: Epoch,
) {
    if !reserved_under.may_be_superseded() {
        return;
    }
    let (cache, lease) = (cache.clone(), lease.clone());
    tokio::spawn(async move {
        match cache.recount_if_superseded(reserved_under).await {
            Ok(Some(found)) => {
                lease.saw(found);
                if reserved_under.superseded_by(found) {
                    counter!(telemetry::LATE_COMMITS, "cause" => "counts_set_anew").increment(1);
                    tracing::warn!(
                        "Orders were written after the hot-stock counts had been set anew from the store (a rebuild or a reset since they reserved their units); marked the counts for a rebuild, so their units are not offered twice."
                    );
                }
            }
            // Lost already: the rebuild to come reads the store, these orders included.
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(error = %error, "Could not check whether the hot-stock counts were set anew while orders were being written; the counts will be rebuilt from the store once the cache answers.");
            }
        }
    });
}
