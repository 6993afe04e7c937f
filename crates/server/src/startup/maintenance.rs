//! The api nodes' partition maintenance timer (PostgreSQL): the same work as `ordermill
//! maintain`, at start and every `postgres.maintenance_interval`, so nobody has to schedule it.
//! Every node runs it; they take turns on an advisory lock and the later ones find it done.

use std::sync::Arc;

use ordermill_store::PostgresStore;
use tokio_util::sync::CancellationToken;

use super::settings::PostgresSettings;

/// Runs until `stop`.
pub async fn run(store: Arc<PostgresStore>, settings: PostgresSettings, stop: CancellationToken) {
    loop {
        match store.maintain(settings.processed_retention.get()).await {
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
            () = tokio::time::sleep(settings.maintenance_interval.get()) => {}
        }
    }
}
