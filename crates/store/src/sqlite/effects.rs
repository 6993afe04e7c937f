//! Consumers' effects, applied in one transaction per batch on the writer thread.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use ordermill_core::ports::{Effect, EffectOutcome, StoreError};
use ordermill_core::{DeadlineChange, OrderId, OrderStatus, OutboxEvent, StockDelta};
use rusqlite::{
    CachedStatement, OptionalExtension, Statement, Transaction, TransactionBehavior, params,
};

use super::error::from_sqlite;
use super::execute_cached;
use super::rows;

pub(crate) fn apply(
    conn: &mut rusqlite::Connection,
    effects: &[Effect],
) -> Result<Vec<EffectOutcome>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(from_sqlite)?;
    let outcomes = apply_in(&tx, effects)?;
    tx.commit().map_err(from_sqlite)?;
    Ok(outcomes)
}

/// [`apply`] inside a transaction the caller commits.
pub(crate) fn apply_in(
    tx: &Transaction<'_>,
    effects: &[Effect],
) -> Result<Vec<EffectOutcome>, StoreError> {
    // Stock changes are summed per SKU and written once per SKU at the end: a batch of
    // deductions for a hot SKU is one UPDATE, not one per order.
    let mut stock_deltas: HashMap<String, StockDelta> = HashMap::new();
    let mut touched: HashMap<OrderId, Touched> = HashMap::new();
    let mut outcomes = Vec::with_capacity(effects.len());
    let mut statements = Statements::prepare(tx)?;
    for effect in effects {
        outcomes.push(apply_one(&mut statements, effect, &mut stock_deltas, &mut touched)?);
    }
    for (id, order) in touched {
        if order.changed {
            write_state_with(&mut statements.write_state, id, &order.order, order.state)?;
            watch_deadline(tx, id, &order.order, order.was)?;
        }
    }
    {
        let mut update = tx
            .prepare_cached(
                "UPDATE products SET stock = stock + ?1, reserved = reserved + ?2 WHERE sku = ?3",
            )
            .map_err(from_sqlite)?;
        for (sku, delta) in &stock_deltas {
            if !delta.is_zero() {
                update.execute(params![delta.stock, delta.reserved, sku]).map_err(from_sqlite)?;
            }
        }
    }
    Ok(outcomes)
}

/// Writes an order's status, lifecycle state and history.
pub(crate) fn write_state(
    tx: &Transaction<'_>,
    order_id: OrderId,
    order: &ordermill_core::Order,
    state: ordermill_core::Lifecycle,
) -> Result<(), StoreError> {
    let mut statement = tx.prepare_cached(WRITE_STATE).map_err(from_sqlite)?;
    write_state_with(&mut statement, order_id, order, state)
}

const WRITE_STATE: &str = "UPDATE orders SET status = ?1, stock_state = ?2, payment_state = ?3, \
     history = ?4, pay_by = ?5, payment_url = ?6 WHERE id = ?7";

/// [`write_state`] with [`WRITE_STATE`] already prepared.
fn write_state_with(
    statement: &mut Statement<'_>,
    order_id: OrderId,
    order: &ordermill_core::Order,
    state: ordermill_core::Lifecycle,
) -> Result<(), StoreError> {
    let awaited = order.awaited_payment.as_ref();
    statement
        .execute(params![
            state.status.as_str(),
            state.stock.as_str(),
            state.payment.as_str(),
            rows::history_json(&order.history),
            awaited.map(|a| a.pay_by.0),
            awaited.map(|a| a.payment_url.as_str()),
            order_id.as_uuid().as_bytes(),
        ])
        .map(drop)
        .map_err(from_sqlite)
}

/// Writes an event with its body to the outbox.
pub(crate) fn insert_event(
    tx: &Transaction<'_>,
    order_id: OrderId,
    event: &OutboxEvent,
) -> Result<(), StoreError> {
    let mut statement = tx.prepare_cached(INSERT_EVENT).map_err(from_sqlite)?;
    insert_event_with(&mut statement, order_id, event)
}

const INSERT_EVENT: &str = "INSERT INTO outbox (event_id, order_id, routing_key, payload, \
     created_at) VALUES (?1, ?2, ?3, ?4, ?5)";

/// [`insert_event`] with [`INSERT_EVENT`] already prepared.
fn insert_event_with(
    statement: &mut Statement<'_>,
    order_id: OrderId,
    event: &OutboxEvent,
) -> Result<(), StoreError> {
    statement
        .execute(params![
            event.event_id.as_bytes(),
            order_id.as_uuid().as_bytes(),
            event.routing_key.as_str(),
            event.payload,
            event.created_at.0
        ])
        .map(drop)
        .map_err(from_sqlite)
}

/// The statements a consumer transaction runs for each of its effects, taken from the
/// connection's statement cache once per transaction. Each checkout hashes the SQL text and
/// moves the cache's LRU entry out and back (~1,000 instructions); taken per effect, that was
/// ~6.8% of the writer thread's work per order (docs/BENCHMARKS.md, fortieth session).
struct Statements<'c> {
    record_processed: CachedStatement<'c>,
    read_order: CachedStatement<'c>,
    record_payment: CachedStatement<'c>,
    insert_event: CachedStatement<'c>,
    write_state: CachedStatement<'c>,
}

impl<'c> Statements<'c> {
    fn prepare(tx: &'c Transaction<'_>) -> Result<Self, StoreError> {
        let prepare = |sql: &str| tx.prepare_cached(sql).map_err(from_sqlite);
        Ok(Self {
            record_processed: prepare(
                "INSERT INTO processed_events (consumer, event_id) VALUES (?1, ?2) \
                 ON CONFLICT DO NOTHING",
            )?,
            read_order: prepare(&format!(
                "SELECT {} FROM orders WHERE id = ?1",
                rows::ORDER_COLUMNS
            ))?,
            // The latest outcome: money after an expiry or a decline replaces it
            // (refund_required).
            record_payment: prepare(
                "INSERT INTO payments (order_id, status, event_id, at) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, \
                 event_id = excluded.event_id, at = excluded.at",
            )?,
            insert_event: prepare(INSERT_EVENT)?,
            write_state: prepare(WRITE_STATE)?,
        })
    }
}

/// Starts or stops watching `order`'s payment deadline, as its status moved from `was`.
fn watch_deadline(
    tx: &Transaction<'_>,
    order_id: OrderId,
    order: &ordermill_core::Order,
    was: OrderStatus,
) -> Result<(), StoreError> {
    match order.deadline_change(was) {
        Some(DeadlineChange::Watch(pay_by)) => execute_cached(
            tx,
            "INSERT INTO payment_deadlines (order_id, pay_by) VALUES (?1, ?2) \
             ON CONFLICT DO NOTHING",
            params![order_id.as_uuid().as_bytes(), pay_by.0],
        )
        .map(drop),
        Some(DeadlineChange::Forget) => execute_cached(
            tx,
            "DELETE FROM payment_deadlines WHERE order_id = ?1",
            [order_id.as_uuid().as_bytes()],
        )
        .map(drop),
        None => Ok(()),
    }
}

/// An order as this transaction's effects left it, written back once at the end: inventory's
/// and payment's effects on the same order often share a transaction (about half the orders
/// under load), and each would otherwise read the row and rewrite it.
struct Touched {
    order: ordermill_core::Order,
    state: ordermill_core::Lifecycle,
    /// Its status before this transaction, for the deadline it starts or stops watching.
    was: OrderStatus,
    changed: bool,
}

fn apply_one(
    statements: &mut Statements<'_>,
    effect: &Effect,
    stock_deltas: &mut HashMap<String, StockDelta>,
    touched: &mut HashMap<OrderId, Touched>,
) -> Result<EffectOutcome, StoreError> {
    let event_id = effect.event_id.as_bytes();
    let first_time = statements
        .record_processed
        .execute(params![&*effect.consumer, event_id])
        .map_err(from_sqlite)?;
    if first_time == 0 {
        return Ok(EffectOutcome::AlreadyProcessed);
    }
    if effect.records_only() {
        return Ok(EffectOutcome::Recorded);
    }
    let order_id = effect.order_id.as_uuid();
    let order = match touched.entry(effect.order_id) {
        Entry::Occupied(seen) => seen.into_mut(),
        Entry::Vacant(first) => {
            let found = statements
                .read_order
                .query_row([order_id.as_bytes()], rows::order_state)
                .optional()
                .map_err(from_sqlite)?
                .transpose()?;
            let Some((order, state)) = found else {
                return Ok(EffectOutcome::OrderNotFound);
            };
            first.insert(Touched { was: order.status, order, state, changed: false })
        }
    };
    let applied = effect.apply_to(&mut order.order, order.state);
    for (sku, delta) in &applied.stock {
        *stock_deltas.entry(sku.as_str().to_owned()).or_default() += *delta;
    }
    order.state = applied.next;
    order.changed |= applied.changed;
    if let Some(record) = applied.payment {
        statements
            .record_payment
            .execute(params![order_id.as_bytes(), record.as_str(), event_id, effect.at.0])
            .map_err(from_sqlite)?;
    }
    for event in &applied.emitted {
        insert_event_with(&mut statements.insert_event, effect.order_id, event)?;
    }
    Ok(applied.into_outcome(&order.order))
}
