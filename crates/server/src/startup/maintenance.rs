//! The api nodes' partition maintenance timer (PostgreSQL, MySQL): the same work as `ordermill
//! maintain`, at start and every `postgres.maintenance_interval` (`mysql.`...), so nobody has
//! to schedule it. Every node runs it; they take turns on a lock (advisory on PostgreSQL,
//! `GET_LOCK` on MySQL) and the later ones find it done.

use tokio_util::sync::CancellationToken;

use super::settings::Settings;
use super::sql_store::SqlStore;

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
