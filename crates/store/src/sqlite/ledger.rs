//! The embedded bus's durable bookkeeping: acks, retries and dead letters beside the outbox.

use std::collections::HashMap;
use std::sync::Arc;

use ordermill_core::ports::{Envelope, LedgerEntry, StoreError};
use ordermill_core::{OutboxEvent, UnixMillis};
use rusqlite::{Connection, TransactionBehavior, params};
use uuid::Uuid;

use super::error::from_sqlite;
use super::rows;

pub(crate) fn record_acks(
    conn: &mut Connection,
    acks: &[(Arc<str>, Uuid)],
    finished: &[Uuid],
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    record_acks_in(&tx, acks, finished)?;
    tx.commit()
}

/// [`record_acks`] inside a transaction the caller commits.
pub(crate) fn record_acks_in(
    tx: &rusqlite::Transaction<'_>,
    acks: &[(Arc<str>, Uuid)],
    finished: &[Uuid],
) -> rusqlite::Result<()> {
    {
        let mut ack = tx.prepare_cached(
            "INSERT INTO bus_acks (event_id, queue) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
        )?;
        let mut done = tx.prepare_cached("DELETE FROM outbox WHERE event_id = ?1")?;
        let mut done_acks = tx.prepare_cached("DELETE FROM bus_acks WHERE event_id = ?1")?;
        let mut done_retries = tx.prepare_cached("DELETE FROM bus_retries WHERE event_id = ?1")?;
        let mut done_dead =
            tx.prepare_cached("DELETE FROM bus_dead_letters WHERE event_id = ?1")?;
        for (queue, event) in acks {
            if !finished.contains(event) {
                ack.execute(params![event.as_bytes(), &**queue])?;
            }
        }
        // Ack rows (written for purges only: the embedded bus keeps consumers' acks in
        // memory), retries and dead letters are rare: one look at each table instead of a
        // lookup per finished event when it is empty.
        let any = |table: &str| {
            tx.prepare_cached(&format!("SELECT EXISTS (SELECT 1 FROM {table})"))?
                .query_row([], |row| row.get::<_, bool>(0))
        };
        let (acked, retries, dead) = if finished.is_empty() {
            (false, false, false)
        } else {
            (any("bus_acks")?, any("bus_retries")?, any("bus_dead_letters")?)
        };
        for id in finished {
            let id = id.as_bytes();
            done.execute([id])?;
            if acked {
                done_acks.execute([id])?;
            }
            if retries {
                done_retries.execute([id])?;
            }
            if dead {
                done_dead.execute([id])?;
            }
        }
    }
    Ok(())
}

pub(crate) fn record_retry(
    conn: &Connection,
    queue: &str,
    event: Uuid,
    attempts: u32,
    not_before: UnixMillis,
    error: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO bus_retries (queue, event_id, attempts, not_before, error) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (queue, event_id) DO UPDATE SET attempts = excluded.attempts,
             not_before = excluded.not_before, error = excluded.error",
    )?
    .execute(params![queue, event.as_bytes(), attempts, not_before.0, error])
    .map(drop)
}

pub(crate) fn record_dead(
    conn: &mut Connection,
    queue: &str,
    event: Uuid,
    attempts: u32,
    error: &str,
    at: UnixMillis,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let id = event.as_bytes();
    tx.execute(
        "INSERT INTO bus_dead_letters (queue, event_id, attempts, error, died_at) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (queue, event_id) DO UPDATE SET attempts = excluded.attempts,
             error = excluded.error, died_at = excluded.died_at",
        params![queue, id, attempts, error, at.0],
    )?;
    tx.execute("DELETE FROM bus_retries WHERE queue = ?1 AND event_id = ?2", params![queue, id])?;
    tx.commit()
}

pub(crate) fn clear_dead(
    conn: &mut Connection,
    queue: &str,
    events: &[Uuid],
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut dead =
            tx.prepare_cached("DELETE FROM bus_dead_letters WHERE queue = ?1 AND event_id = ?2")?;
        let mut retry =
            tx.prepare_cached("DELETE FROM bus_retries WHERE queue = ?1 AND event_id = ?2")?;
        for event in events {
            let id = event.as_bytes();
            dead.execute(params![queue, id])?;
            retry.execute(params![queue, id])?;
        }
    }
    tx.commit()
}

/// Rows of a per-(queue, event) table grouped by event id (the first column).
fn by_event<T>(
    conn: &Connection,
    sql: &str,
    value: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<HashMap<Uuid, Vec<T>>, StoreError> {
    let mut grouped: HashMap<Uuid, Vec<T>> = HashMap::new();
    let mut stmt = conn.prepare(sql).map_err(from_sqlite)?;
    let rows =
        stmt.query_map([], |r| Ok((r.get::<_, Uuid>(0)?, value(r)?))).map_err(from_sqlite)?;
    for row in rows {
        let (event, v) = row.map_err(from_sqlite)?;
        grouped.entry(event).or_default().push(v);
    }
    Ok(grouped)
}

/// Every outbox event with its per-queue state; order.created bodies are rebuilt from orders.
pub(crate) fn unfinished(conn: &Connection) -> Result<Vec<LedgerEntry>, StoreError> {
    let mut acked =
        by_event(conn, "SELECT event_id, queue FROM bus_acks", |r| r.get::<_, String>(1))?;
    let mut retries = by_event(
        conn,
        "SELECT event_id, queue, attempts, not_before, error FROM bus_retries",
        |r| Ok((r.get(1)?, r.get::<_, u32>(2)?, UnixMillis(r.get(3)?), r.get(4)?)),
    )?;
    let mut dead = by_event(
        conn,
        "SELECT event_id, queue, attempts, error, died_at FROM bus_dead_letters",
        |r| Ok((r.get(1)?, r.get::<_, u32>(2)?, r.get(3)?, UnixMillis(r.get(4)?))),
    )?;

    let sql = format!(
        "SELECT outbox.event_id, outbox.routing_key, outbox.payload, {} FROM outbox \
         LEFT JOIN orders ON orders.id = outbox.order_id ORDER BY outbox.event_id",
        rows::ORDER_COLUMNS
            .split(", ")
            .map(|c| format!("orders.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut stmt = conn.prepare(&sql).map_err(from_sqlite)?;
    let mut rows_iter = stmt.query([]).map_err(from_sqlite)?;
    let mut out = Vec::new();
    while let Some(row) = rows_iter.next().map_err(from_sqlite)? {
        let event_id: Uuid = row.get(0).map_err(from_sqlite)?;
        let key: String = row.get(1).map_err(from_sqlite)?;
        let payload: Option<String> = row.get(2).map_err(from_sqlite)?;
        let payload = match payload {
            Some(payload) => payload,
            None => {
                let (order, _) = rows::order_state_at(row, 3).map_err(from_sqlite)??;
                OutboxEvent::order_created(&order, event_id).payload
            }
        };
        out.push(LedgerEntry {
            envelope: Envelope {
                event_id,
                routing_key: Arc::from(key),
                payload: Arc::from(payload),
            },
            acked: acked.remove(&event_id).unwrap_or_default(),
            retries: retries.remove(&event_id).unwrap_or_default(),
            dead: dead.remove(&event_id).unwrap_or_default(),
        });
    }
    Ok(out)
}
