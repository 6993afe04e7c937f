//! Consumers' "already handled" records kept for `sqlite.processed_retention`, then removed:
//! the embedded counterpart of the shared databases' daily `processed_events` partitions,
//! which are dropped whole. SQLite has no partitions, so the writer deletes old records in
//! small chunks between the commits that answer clients.

use ordermill_core::ports::StoreError;
use rusqlite::{Connection, TransactionBehavior, params};
use uuid::Uuid;

use super::error::from_sqlite;
use super::execute_cached;

/// Removes up to `limit` records whose event id is below `before` (event ids are UUIDv7, so
/// that is every event made before its time), in one transaction. Returns how many went.
///
/// The table is keyed by `(event_id, consumer)` (schema 7), so the old records are one range
/// at the start of the index.
pub(crate) fn prune_processed(
    conn: &mut Connection,
    before: Uuid,
    limit: u32,
) -> Result<u64, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(from_sqlite)?;
    let removed = execute_cached(
        &tx,
        "DELETE FROM processed_events WHERE (event_id, consumer) IN
             (SELECT event_id, consumer FROM processed_events WHERE event_id < ?1
              ORDER BY event_id, consumer LIMIT ?2)",
        params![before.as_bytes(), i64::from(limit)],
    )?;
    tx.commit().map_err(from_sqlite)?;
    Ok(removed as u64)
}
