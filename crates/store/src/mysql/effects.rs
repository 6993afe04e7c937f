//! Consumers' effects on MySQL: `crate::batch` decides (the same code as on PostgreSQL), this
//! file reads, locks and writes, in ONE transaction per batch with a fixed number of
//! statements whatever the batch size.
//!
//! The duplicate check: the batch's `(consumer, event)` pairs already recorded are read with
//! `FOR UPDATE`, the others inserted in the same transaction. A batch of first deliveries
//! (`batch::checked`) skips the read and inserts every pair. A pair recorded before, or two
//! batches recording the same new pair at once (the second's INSERT waits on the first's row
//! and gets a duplicate once the first commits): the transaction runs again
//! (`TxError::Raced`), checked — then it reads the pair as recorded and reports
//! `AlreadyProcessed`. No effect is applied twice either way.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};

use ordermill_core::ports::{Effect, EffectOutcome, StoreError};
use ordermill_core::{Lifecycle, Order};
use sqlx::{MySql, MySqlConnection, QueryBuilder, Row};
use uuid::Uuid;

use super::error::{DUPLICATE, TxError, number};
use super::rows;
use super::shape;
use super::tx::transaction;
use crate::batch::{self, Loaded, Writes};

/// Applies `effects` in one transaction: all of them or none.
pub(crate) async fn apply(
    conn: &mut MySqlConnection,
    effects: &[Effect],
) -> Result<Vec<EffectOutcome>, StoreError> {
    if effects.is_empty() {
        return Ok(Vec::new());
    }
    // Set once a try finds a repeat: the tries after it check each record.
    let checked = AtomicBool::new(batch::checked(effects));
    transaction!(conn, |tx| apply_in(&mut tx, effects, &checked))
}

async fn apply_in(
    conn: &mut MySqlConnection,
    effects: &[Effect],
    checked: &AtomicBool,
) -> Result<Vec<EffectOutcome>, TxError> {
    let (pairs, first) = batch::pairs(effects);
    let fresh = record_processed(conn, &pairs, checked).await.inspect_err(|error| {
        if matches!(error, TxError::Raced(_)) && !checked.swap(true, Ordering::Relaxed) {
            batch::unforeseen_repeat(effects);
        }
    })?;
    let applies = batch::applies(effects, &first, &fresh);
    let order_ids = batch::orders_to_lock(effects, &applies);
    let mut orders: HashMap<Uuid, Loaded> = HashMap::with_capacity(order_ids.len());
    for (order, state) in lock_orders(conn, &order_ids).await? {
        orders.insert(order.id.as_uuid(), Loaded::new(order, state));
    }
    let mut writes = Writes::default();
    let outcomes = batch::run(effects, &applies, &mut orders, &mut writes);
    let dirty: Vec<(&Order, Lifecycle)> =
        orders.values().filter(|l| l.dirty).map(|l| (&l.order, l.state)).collect();
    write(conn, &dirty, writes).await?;
    Ok(outcomes)
}

/// Records the pairs not recorded yet; returns them. Unless `checked`, takes every pair for new.
async fn record_processed(
    conn: &mut MySqlConnection,
    pairs: &[(&str, Uuid)],
    checked: &AtomicBool,
) -> Result<HashSet<(String, Uuid)>, TxError> {
    let mut recorded: HashSet<(String, Uuid)> = HashSet::with_capacity(pairs.len());
    let to_check = if checked.load(Ordering::Relaxed) { pairs } else { &[] };
    for chunk in shape::padded(to_check) {
        let mut query = QueryBuilder::<MySql>::new(
            "SELECT consumer, event_id FROM processed_events WHERE (consumer, event_id) IN (",
        );
        let mut list = query.separated(", ");
        for (consumer, event) in &chunk {
            list.push("(").push_bind_unseparated(*consumer).push_unseparated(", ");
            list.push_bind_unseparated(*event).push_unseparated(")");
        }
        query.push(") FOR UPDATE");
        for row in query.build().fetch_all(&mut *conn).await? {
            recorded.insert((row.try_get(0)?, row.try_get(1)?));
        }
    }
    let fresh: Vec<&(&str, Uuid)> =
        pairs.iter().filter(|(c, e)| !recorded.contains(&((*c).to_owned(), *e))).collect();
    for chunk in shape::chunks(&fresh) {
        let mut query =
            QueryBuilder::<MySql>::new("INSERT INTO processed_events (consumer, event_id) ");
        query.push_values(chunk, |mut row, (consumer, event)| {
            row.push_bind(*consumer).push_bind(*event);
        });
        if let Err(error) = query.build().execute(&mut *conn).await {
            return Err(match number(&error) {
                Some(DUPLICATE) => TxError::Raced("an event of the batch was recorded already"),
                _ => error.into(),
            });
        }
    }
    Ok(fresh.into_iter().map(|(c, e)| ((*c).to_owned(), *e)).collect())
}

/// Reads and locks orders, in id order (so batches sharing orders wait instead of deadlocking).
pub(crate) async fn lock_orders(
    conn: &mut MySqlConnection,
    ids: &[Uuid],
) -> Result<Vec<(Order, Lifecycle)>, TxError> {
    let mut found = Vec::with_capacity(ids.len());
    for chunk in shape::padded(ids) {
        let mut query = QueryBuilder::<MySql>::new(format!(
            "SELECT {} FROM orders WHERE id IN (",
            rows::ORDER_COLUMNS
        ));
        let mut list = query.separated(", ");
        for id in chunk {
            list.push_bind(id);
        }
        query.push(") ORDER BY id FOR UPDATE");
        for row in query.build().fetch_all(&mut *conn).await? {
            found.push(rows::order_state(&row, 0)?);
        }
    }
    Ok(found)
}

/// A derived table of literal rows for `UPDATE ... JOIN (...)`: `SELECT ? AS a, ? AS b UNION
/// ALL SELECT ?, ? ...` (MySQL 8 and MariaDB both read it; neither has arrays to unnest).
pub(crate) fn derived_rows<T>(
    query: &mut QueryBuilder<MySql>,
    rows: &[T],
    columns: &[&str],
    mut bind: impl FnMut(&mut QueryBuilder<MySql>, &T, usize),
) {
    for (i, row) in rows.iter().enumerate() {
        query.push(if i == 0 { "SELECT " } else { " UNION ALL SELECT " });
        for (c, name) in columns.iter().enumerate() {
            if c > 0 {
                query.push(", ");
            }
            bind(query, row, c);
            if i == 0 {
                query.push(" AS ").push(*name);
            }
        }
    }
}

/// Writes `orders`' new states and everything in `writes`, on the caller's transaction (the
/// orders are locked already). Products are locked here, in SKU order, as commits lock them.
pub(crate) async fn write(
    conn: &mut MySqlConnection,
    orders: &[(&Order, Lifecycle)],
    mut writes: Writes,
) -> Result<(), TxError> {
    for chunk in shape::padded(orders) {
        let mut query = QueryBuilder::<MySql>::new("UPDATE orders o JOIN (");
        let columns =
            ["id", "status", "stock_state", "payment_state", "history", "pay_by", "payment_url"];
        derived_rows(&mut query, &chunk, &columns, |q, (order, state), c| {
            let awaited = order.awaited_payment.as_ref();
            match c {
                0 => q.push_bind(order.id.as_uuid()),
                1 => q.push_bind(state.status.as_str()),
                2 => q.push_bind(state.stock.as_str()),
                3 => q.push_bind(state.payment.as_str()),
                4 => q.push_bind(rows::history_json(&order.history)),
                5 => q.push_bind(awaited.map(|a| a.pay_by.0)),
                _ => q.push_bind(awaited.map(|a| a.payment_url.clone())),
            };
        });
        query.push(
            ") c ON o.id = c.id SET o.status = c.status, o.stock_state = c.stock_state,
                 o.payment_state = c.payment_state, o.history = c.history, o.pay_by = c.pay_by,
                 o.payment_url = c.payment_url",
        );
        query.build().execute(&mut *conn).await?;
    }

    let rows: Vec<usize> = (0..writes.payment_orders.len()).collect();
    for chunk in shape::chunks(&rows) {
        let mut query =
            QueryBuilder::<MySql>::new("INSERT INTO payments (order_id, status, event_id, `at`) ");
        query.push_values(chunk, |mut row, i| {
            row.push_bind(writes.payment_orders[*i])
                .push_bind(writes.payment_statuses[*i])
                .push_bind(writes.payment_events[*i])
                .push_bind(writes.payment_at[*i]);
        });
        // The latest outcome: money after an expiry or a decline replaces it (refund_required).
        query.push(
            " ON DUPLICATE KEY UPDATE status = VALUES(status), event_id = VALUES(event_id), \
             `at` = VALUES(`at`)",
        );
        query.build().execute(&mut *conn).await?;
    }

    if !writes.event_ids.is_empty() {
        let rows: Vec<usize> = (0..writes.event_ids.len()).collect();
        for chunk in shape::chunks(&rows) {
            let mut query = QueryBuilder::<MySql>::new(
                "INSERT INTO outbox (event_id, order_id, routing_key, payload, created_at) ",
            );
            query.push_values(chunk, |mut row, i| {
                row.push_bind(writes.event_ids[*i])
                    .push_bind(writes.event_orders[*i])
                    .push_bind(writes.event_keys[*i])
                    .push_bind(writes.event_payloads[*i].as_str())
                    .push_bind(writes.event_at[*i]);
            });
            query.build().execute(&mut *conn).await?;
        }
    }

    let (skus, stock, reserved) = writes.stock_columns();
    let rows: Vec<usize> = (0..skus.len()).collect();
    for rows in shape::padded(&rows) {
        let mut query = QueryBuilder::<MySql>::new("SELECT sku FROM products WHERE sku IN (");
        let mut list = query.separated(", ");
        for i in &rows {
            list.push_bind(skus[*i].as_str());
        }
        query.push(") ORDER BY sku FOR UPDATE");
        query.build().execute(&mut *conn).await?;
        let mut query = QueryBuilder::<MySql>::new("UPDATE products p JOIN (");
        derived_rows(&mut query, &rows, &["sku", "stock", "reserved"], |q, i, c| {
            match c {
                0 => q.push_bind(skus[*i].as_str()),
                1 => q.push_bind(stock[*i]),
                _ => q.push_bind(reserved[*i]),
            };
        });
        query.push(
            ") d ON p.sku = d.sku SET p.stock = p.stock + d.stock, p.reserved = p.reserved + d.reserved",
        );
        query.build().execute(&mut *conn).await?;
    }

    // A cancelled order's units no longer count against its customer's limits (SKUs without
    // a limit have no row to change).
    let (u_skus, u_customers, u_units) = writes.uncounted_columns();
    for i in 0..u_skus.len() {
        sqlx::query(
            "UPDATE customer_units SET units = GREATEST(0, units - ?) WHERE sku = ? AND customer_id = ?",
        )
        .bind(u_units[i])
        .bind(u_skus[i].as_str())
        .bind(u_customers[i].as_str())
        .execute(&mut *conn)
        .await?;
    }

    for chunk in shape::chunks(&writes.deadlines_set) {
        let mut query =
            QueryBuilder::<MySql>::new("INSERT IGNORE INTO payment_deadlines (order_id, pay_by) ");
        query.push_values(chunk, |mut row, (order, pay_by)| {
            row.push_bind(*order).push_bind(*pay_by);
        });
        query.build().execute(&mut *conn).await?;
    }
    for list in shape::padded(&writes.deadlines_done) {
        let mut query =
            QueryBuilder::<MySql>::new("DELETE FROM payment_deadlines WHERE order_id IN (");
        let mut ids = query.separated(", ");
        for id in list {
            ids.push_bind(id);
        }
        query.push(")");
        query.build().execute(&mut *conn).await?;
    }
    // Units given back here and owed to the hot-stock cache until the node gives them back
    // there (migration 0002): see the PostgreSQL store's `returns_owed`.
    for chunk in shape::chunks(&writes.returns) {
        let mut query = QueryBuilder::<MySql>::new("INSERT IGNORE INTO stock_returns (order_id) ");
        query.push_values(chunk, |mut row, order| {
            row.push_bind(*order);
        });
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}
