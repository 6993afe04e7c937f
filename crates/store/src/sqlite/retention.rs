//! Consumers' "already handled" records kept for `sqlite.processed_retention`, then removed:
//! the embedded counterpart of the shared databases' daily `processed_events` partitions,
//! which are dropped whole. SQLite has no partitions, so the writer deletes old records in
//! small chunks between the commits that answer clients.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use uuid::Uuid;

/// Removes up to `limit` records whose event id is below `before` (event ids are UUIDv7, so
/// that is every event made before its time), in one transaction. Returns how many went.
///
/// The table is keyed by `(consumer, event_id)`: each consumer's old records are one index
/// range, found by seeking from consumer to consumer rather than scanning the table.
pub(crate) fn prune_processed(
    conn: &mut Connection,
    before: Uuid,
    limit: u32,
) -> rusqlite::Result<u64> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut removed = 0u64;
    {
        let mut next_consumer = tx.prepare_cached(
            "SELECT consumer FROM processed_events WHERE consumer > ?1 ORDER BY consumer LIMIT 1",
        )?;
        let mut delete = tx.prepare_cached(
            "DELETE FROM processed_events WHERE consumer = ?1 AND event_id IN
                 (SELECT event_id FROM processed_events WHERE consumer = ?1 AND event_id < ?2
                  ORDER BY event_id LIMIT ?3)",
        )?;
        let mut after = String::new();
        while removed < u64::from(limit) {
            let Some(consumer) =
                next_consumer.query_row([&after], |row| row.get::<_, String>(0)).optional()?
            else {
                break;
            };
            let room = i64::try_from(u64::from(limit) - removed).unwrap_or(i64::MAX);
            removed += delete.execute(params![consumer, before.as_bytes(), room])? as u64;
            after = consumer;
        }
    }
    tx.commit()?;
    Ok(removed)
}
