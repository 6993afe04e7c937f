//! Consumers' effects, applied in one transaction per batch on the writer thread.

use std::collections::HashMap;

use ordermill_core::ports::{Effect, EffectOutcome, StoreError};
use ordermill_core::{Fact, OrderStatus, OutboxEvent, StatusChange, StockAction};
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};

use super::error::from_sqlite;
use super::rows;

pub(crate) fn apply(
    conn: &mut rusqlite::Connection,
    effects: &[Effect],
) -> Result<Vec<EffectOutcome>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(from_sqlite)?;
    // Stock changes are summed per SKU and written once per SKU at the end: a batch of
    // deductions for a hot SKU is one UPDATE, not one per order.
    let mut stock_deltas: HashMap<String, (i64, i64)> = HashMap::new();
    let mut outcomes = Vec::with_capacity(effects.len());
    for effect in effects {
        outcomes.push(apply_one(&tx, effect, &mut stock_deltas)?);
    }
    {
        let mut update = tx
            .prepare_cached(
                "UPDATE products SET stock = stock + ?1, reserved = reserved + ?2 WHERE sku = ?3",
            )
            .map_err(from_sqlite)?;
        for (sku, (stock, reserved)) in &stock_deltas {
            if (*stock, *reserved) != (0, 0) {
                update.execute(params![stock, reserved, sku]).map_err(from_sqlite)?;
            }
        }
    }
    tx.commit().map_err(from_sqlite)?;
    Ok(outcomes)
}

/// Writes an order's status, lifecycle state and history.
pub(crate) fn write_state(
    tx: &Transaction<'_>,
    order_id: &str,
    order: &ordermill_core::Order,
    state: ordermill_core::Lifecycle,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "UPDATE orders SET status = ?1, stock_state = ?2, payment_state = ?3, history = ?4 WHERE id = ?5",
    )
    .and_then(|mut s| {
        s.execute(params![
            state.status.as_str(),
            state.stock.as_str(),
            state.payment.as_str(),
            rows::history_json(&order.history),
            order_id,
        ])
    })
    .map(drop)
    .map_err(from_sqlite)
}

/// Writes an event with its body to the outbox.
pub(crate) fn insert_event(
    tx: &Transaction<'_>,
    order_id: &str,
    event: &OutboxEvent,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO outbox (event_id, order_id, routing_key, payload, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            event.event_id.hyphenated().to_string(),
            order_id,
            event.routing_key.as_str(),
            event.payload,
            event.created_at.0
        ])
    })
    .map(drop)
    .map_err(from_sqlite)
}

fn apply_one(
    tx: &Transaction<'_>,
    effect: &Effect,
    stock_deltas: &mut HashMap<String, (i64, i64)>,
) -> Result<EffectOutcome, StoreError> {
    let event_id = effect.event_id.hyphenated().to_string();
    let first_time = tx
        .prepare_cached("INSERT INTO processed_events (consumer, event_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING")
        .and_then(|mut s| s.execute(params![&*effect.consumer, event_id]))
        .map_err(from_sqlite)?;
    if first_time == 0 {
        return Ok(EffectOutcome::AlreadyProcessed);
    }
    let order_id = effect.order_id.to_string();
    let found = tx
        .prepare_cached(&format!("SELECT {} FROM orders WHERE id = ?1", rows::ORDER_COLUMNS))
        .and_then(|mut s| s.query_row([&order_id], rows::order_state).optional())
        .map_err(from_sqlite)?
        .transpose()?;
    let Some((mut order, state)) = found else {
        return Ok(EffectOutcome::OrderNotFound);
    };
    let Some(fact) = effect.fact else {
        return Ok(EffectOutcome::Applied {
            order,
            emitted: Vec::new(),
            released: Vec::new(),
            status_changed: false,
        });
    };
    let transition = state.apply(fact);
    let status_changed = transition.status_changed(&state);
    for line in &order.lines {
        let q = i64::from(line.quantity.get());
        let delta = match transition.stock_action {
            StockAction::None => continue,
            StockAction::Deduct => (-q, -q),
            StockAction::ReleaseHeld => (0, -q),
            StockAction::Restore => (q, 0),
        };
        let entry = stock_deltas.entry(line.sku.as_str().to_owned()).or_default();
        entry.0 += delta.0;
        entry.1 += delta.1;
    }
    let released = match transition.stock_action {
        StockAction::ReleaseHeld | StockAction::Restore => order.lines.clone(),
        StockAction::None | StockAction::Deduct => Vec::new(),
    };
    order.status = transition.next.status;
    if status_changed {
        order.history.push(StatusChange { status: transition.next.status, at: effect.at });
    }
    write_state(tx, &order_id, &order, transition.next)?;
    if transition.next.payment != state.payment {
        let status = if matches!(fact, Fact::PaymentSucceeded) { "succeeded" } else { "declined" };
        tx.prepare_cached(
            "INSERT INTO payments (order_id, status, event_id, at) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![order_id, status, event_id, effect.at.0]))
        .map_err(from_sqlite)?;
    }
    let mut emitted = Vec::with_capacity(transition.emit.len());
    for (key, id) in transition.emit.iter().zip(effect.new_event_ids) {
        let reason = if *key == ordermill_core::RoutingKey::PaymentFailed
            || order.status == OrderStatus::Cancelled
        {
            effect.reason.as_deref()
        } else {
            None
        };
        let event = OutboxEvent::order_changed(&order, *key, id, effect.at, reason);
        insert_event(tx, &order_id, &event)?;
        emitted.push(event);
    }
    Ok(EffectOutcome::Applied { order, emitted, released, status_changed })
}
