//! The api nodes' partition maintenance timer (PostgreSQL, MySQL): the same work as `ordermill
//! maintain`, at start and every `postgres.maintenance_interval` (`mysql.`...), so nobody has
//! to schedule it. Every node runs it; they take turns on a lock (advisory on PostgreSQL,
//! `GET_LOCK` on MySQL) and the later ones find it done. And its embedded counterpart:
//! `ordermill serve` removing consumers' records past `sqlite.processed_retention`.

use std::sync::Arc;
use std::time::Duration;

use ordermill_core::{Clock, UnixMillis};
use ordermill_store::SqliteStore;
use tokio_util::sync::CancellationToken;

use super::settings::Settings;
use super::sql_store::SqlStore;

/// Records one embedded prune transaction removes at most: well under a millisecond of the
/// writer's time, so an order's commit queued behind it hardly notices (1,000 took ~3.4 ms
/// with its fsync, and put half load's p50 at 2.75 ms against 1.42 while pruning ran).
const PRUNE_CHUNK: u32 = 250;
/// The writer's breather between chunks, for the commits that queued meanwhile.
const PRUNE_PAUSE: Duration = Duration::from_millis(5);

/// Runs until `stop`.
pub async fn run(store: SqlStore, settings: Settings, stop: CancellationToken) {
    loop {
        match store.maintain(&settings).await {
            Ok(done) if done.created.is_empty() && done.dropped.is_empty() => {
                tracing::debug!("Partition maintenance: nothing to do.");
            }
            Ok(done) => tracing::info!(
                created = %done.created.join(", "),
                dropped = %done.dropped.join(", "),
                "Partition maintenance created upcoming partitions and dropped expired ones."
            ),
            // Not urgent: a week of partitions is kept ahead, and rows beyond them land in
            // the DEFAULT partitions, still correct.
            Err(error) => {
                tracing::warn!(error = %error, "Partition maintenance failed; it runs again at the next interval.")
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(store.maintenance_interval(&settings)) => {}
        }
    }
}

/// The embedded store's retention timer: at start and every `interval`, removes consumers'
/// records of events made more than `retention` ago, chunk by chunk, until `stop`.
pub async fn run_embedded(
    store: Arc<SqliteStore>,
    (retention, interval): (Duration, Duration),
    clock: Arc<dyn Clock>,
    stop: CancellationToken,
) {
    loop {
        let retention_ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        let cutoff = UnixMillis(clock.now().0.saturating_sub(retention_ms));
        match prune_embedded(&store, cutoff, &stop).await {
            Ok(0) => {
                tracing::debug!("Retention: no consumer records past sqlite.processed_retention.")
            }
            Ok(removed) => tracing::info!(
                removed,
                "Retention removed consumer records past sqlite.processed_retention."
            ),
            // Not urgent: the records only take room until the next interval.
            Err(error) => tracing::warn!(
                error = %error,
                "Retention of consumer records failed; it runs again at the next interval."
            ),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}

/// Prunes in chunks until one comes back short or `stop`; how many went.
async fn prune_embedded(
    store: &SqliteStore,
    cutoff: UnixMillis,
    stop: &CancellationToken,
) -> Result<u64, ordermill_core::ports::StoreError> {
    let mut removed = 0;
    loop {
        let chunk = store.prune_processed(cutoff, PRUNE_CHUNK).await?;
        removed += chunk;
        if chunk < u64::from(PRUNE_CHUNK) {
            return Ok(removed);
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(removed),
            () = tokio::time::sleep(PRUNE_PAUSE) => {}
        }
    }
}
