//! Consumers' effects, applied in one transaction per batch on the writer thread.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use ordermill_core::ports::{Effect, EffectOutcome, StoreError};
use ordermill_core::{DeadlineChange, OrderId, OrderStatus, OutboxEvent, StockDelta};
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::error::from_sqlite;
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
    for effect in effects {
        outcomes.push(apply_one(tx, effect, &mut stock_deltas, &mut touched)?);
    }
    for (id, order) in touched {
        if order.changed {
            write_state(tx, id, &order.order, order.state)?;
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
    tx.prepare_cached(
        "UPDATE orders SET status = ?1, stock_state = ?2, payment_state = ?3, history = ?4, \
         pay_by = ?5, payment_url = ?6 WHERE id = ?7",
    )
    .and_then(|mut s| {
        let awaited = order.awaited_payment.as_ref();
        s.execute(params![
            state.status.as_str(),
            state.stock.as_str(),
            state.payment.as_str(),
            rows::history_json(&order.history),
            awaited.map(|a| a.pay_by.0),
            awaited.map(|a| a.payment_url.as_str()),
            order_id.as_uuid().as_bytes(),
        ])
    })
    .map(drop)
    .map_err(from_sqlite)
}

/// Writes an event with its body to the outbox.
pub(crate) fn insert_event(
    tx: &Transaction<'_>,
    order_id: OrderId,
    event: &OutboxEvent,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO outbox (event_id, order_id, routing_key, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            event.event_id.as_bytes(),
            order_id.as_uuid().as_bytes(),
            event.routing_key.as_str(),
            event.payload,
            event.created_at.0
        ])
    })
    .map(drop)
    .map_err(from_sqlite)
}

/// Starts or stops watching `order`'s payment deadline, as its status moved from `was`.
fn watch_deadline(
    tx: &Transaction<'_>,
    order_id: OrderId,
    order: &ordermill_core::Order,
    was: OrderStatus,
) -> Result<(), StoreError> {
    let result = match order.deadline_change(was) {
        Some(DeadlineChange::Watch(pay_by)) => tx
            .prepare_cached(
                "INSERT INTO payment_deadlines (order_id, pay_by) VALUES (?1, ?2) \
                 ON CONFLICT DO NOTHING",
            )
            .and_then(|mut s| s.execute(params![order_id.as_uuid().as_bytes(), pay_by.0])),
        Some(DeadlineChange::Forget) => tx
            .prepare_cached("DELETE FROM payment_deadlines WHERE order_id = ?1")
            .and_then(|mut s| s.execute([order_id.as_uuid().as_bytes()])),
        None => Ok(0),
    };
    result.map(drop).map_err(from_sqlite)
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
    tx: &Transaction<'_>,
    effect: &Effect,
    stock_deltas: &mut HashMap<String, StockDelta>,
    touched: &mut HashMap<OrderId, Touched>,
) -> Result<EffectOutcome, StoreError> {
    let event_id = effect.event_id.as_bytes();
    let first_time = tx
        .prepare_cached("INSERT INTO processed_events (consumer, event_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING")
        .and_then(|mut s| s.execute(params![&*effect.consumer, event_id]))
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
            let found = tx
                .prepare_cached(&format!(
                    "SELECT {} FROM orders WHERE id = ?1",
                    rows::ORDER_COLUMNS
                ))
                .and_then(|mut s| s.query_row([order_id.as_bytes()], rows::order_state).optional())
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
        // The latest outcome: money after an expiry or a decline replaces it (refund_required).
        tx.prepare_cached(
            "INSERT INTO payments (order_id, status, event_id, at) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT (order_id) DO UPDATE SET status = excluded.status, \
             event_id = excluded.event_id, at = excluded.at",
        )
        .and_then(|mut s| {
            s.execute(params![order_id.as_bytes(), record.as_str(), event_id, effect.at.0])
        })
        .map_err(from_sqlite)?;
    }
    for event in &applied.emitted {
        insert_event(tx, effect.order_id, event)?;
    }
    Ok(applied.into_outcome(&order.order))
}
