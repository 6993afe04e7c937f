//! Group-buy deals and purchase limits on the writer thread (joins, completion, expiry) and
//! the read connections (lookups).

use ordermill_core::ports::{ExpiredDeal, JoinOutcome, StoreError};
use ordermill_core::{
    Admission, CustomerId, Deal, DealId, Order, OrderId, OutboxEvent, RoutingKey, Sku, UnixMillis,
    units_by_sku,
};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use uuid::Uuid;

use super::effects::{insert_event, write_state};
use super::error::from_sqlite;
use super::execute_cached;
use super::rows;
use crate::decode::{DealColumns, corrupt};
use crate::join::{Join, again};

pub(crate) fn create(conn: &mut Connection, deal: &Deal) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(from_sqlite)?;
    let product = tx
        .query_row("SELECT 1 FROM products WHERE sku = ?1", [deal.sku.as_str()], |_| Ok(()))
        .optional()
        .map_err(from_sqlite)?;
    if product.is_none() {
        return Err(StoreError::Conflict(format!("sku {} is not in the catalog", deal.sku)));
    }
    tx.execute(
        "INSERT INTO deals (id, sku, deal_price_minor, group_size, created_at, expires_at, status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            deal.id.as_uuid().as_bytes(),
            deal.sku.as_str(),
            deal.deal_price.minor(),
            deal.group_size.get(),
            deal.created_at.0,
            deal.expires_at.0,
            deal.status.as_str(),
        ],
    )
    .map_err(from_sqlite)?;
    tx.commit().map_err(from_sqlite)
}

/// A deal and its members, on any connection (a read one, or the writer's transaction).
pub(crate) fn load(conn: &Connection, id: DealId) -> Result<Option<Deal>, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT sku, deal_price_minor, group_size, created_at, expires_at, status
             FROM deals WHERE id = ?1",
        )
        .and_then(|mut s| {
            s.query_row([id.as_uuid().as_bytes()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .optional()
        })
        .map_err(from_sqlite)?;
    let Some((sku, price, size, created, expires, status)) = row else { return Ok(None) };
    let mut stmt = conn
        .prepare_cached(
            "SELECT customer_id, order_id, joined_at FROM deal_members WHERE deal_id = ?1
             ORDER BY joined_at, order_id",
        )
        .map_err(from_sqlite)?;
    let members = stmt
        .query_map([id.as_uuid().as_bytes()], |r| {
            Ok((r.get::<_, String>(0)?, OrderId::from_uuid(r.get(1)?), r.get::<_, i64>(2)?))
        })
        .map_err(from_sqlite)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(from_sqlite)?;
    let columns = DealColumns {
        id,
        sku,
        deal_price_minor: price,
        group_size: size,
        created_at: created,
        expires_at: expires,
        status,
        members,
    };
    columns.decode().map(Some)
}

pub(crate) fn due(
    conn: &Connection,
    now: UnixMillis,
    limit: usize,
) -> Result<Vec<DealId>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id FROM deals WHERE status = 'open' AND expires_at <= ?1
             ORDER BY expires_at LIMIT ?2",
        )
        .map_err(from_sqlite)?;
    stmt.query_map(params![now.0, limit as i64], |r| r.get::<_, Uuid>(0).map(DealId::from_uuid))
        .map_err(from_sqlite)?
        .collect::<Result<_, _>>()
        .map_err(from_sqlite)
}

pub(crate) fn created(
    conn: &Connection,
    range: (UnixMillis, UnixMillis),
    before: Option<DealId>,
    limit: u32,
) -> Result<Vec<DealId>, StoreError> {
    let (low, high) = crate::decode::deal_bounds(range, before);
    let mut stmt = conn
        .prepare_cached("SELECT id FROM deals WHERE id >= ?1 AND id < ?2 ORDER BY id DESC LIMIT ?3")
        .map_err(from_sqlite)?;
    stmt.query_map(params![low.as_bytes(), high.as_bytes(), i64::from(limit)], |r| {
        r.get::<_, Uuid>(0).map(DealId::from_uuid)
    })
    .map_err(from_sqlite)?
    .collect::<Result<_, _>>()
    .map_err(from_sqlite)
}

/// One join in a transaction of its own.
pub(crate) fn join(conn: &mut Connection, join: &Join) -> Result<JoinOutcome, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(from_sqlite)?;
    let outcome = join_in(&tx, join)?;
    if matches!(outcome, JoinOutcome::Joined { .. }) {
        tx.commit().map_err(from_sqlite)?;
    }
    // Otherwise dropping `tx` rolls back: nothing written.
    Ok(outcome)
}

/// Joins queued together, in ONE transaction and so one fsync, where each had cost its own: a
/// flash group-buy's joins are as many commits as orders would be, without a group commit.
/// Each join runs in a savepoint of its own, in queue order, so each is decided as it would be
/// alone (a later join sees an earlier one's membership, the one that fills a group completes
/// it) and a refused or failed join writes nothing and leaves the others as they were. If the
/// transaction cannot be committed, no join stands: each is answered with the error (a
/// refusal stays a refusal: it wrote nothing either way).
pub(crate) fn join_each(
    conn: &mut Connection,
    joins: &[Join],
) -> Vec<Result<JoinOutcome, StoreError>> {
    let tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(error) => {
            let error = from_sqlite(error);
            return joins.iter().map(|_| Err(again(&error))).collect();
        }
    };
    let mut outcomes = Vec::with_capacity(joins.len());
    let mut abandoned = None;
    for join in joins {
        match join_in_savepoint(&tx, join) {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) => {
                abandoned = Some(error);
                break;
            }
        }
    }
    let ended = match abandoned {
        None => tx.commit().map_err(from_sqlite),
        // Dropping `tx` rolls back whatever is left of it.
        Some(error) => Err(error),
    };
    let Err(error) = ended else { return outcomes };
    let mut failed: Vec<_> = outcomes
        .into_iter()
        .map(|outcome| match outcome {
            Ok(refused @ (JoinOutcome::Refused(_) | JoinOutcome::NotFound)) => Ok(refused),
            Ok(JoinOutcome::Joined { .. }) | Err(_) => Err(again(&error)),
        })
        .collect();
    failed.resize_with(joins.len(), || Err(again(&error)));
    failed
}

/// `join` between `SAVEPOINT` and `RELEASE`, undone to the savepoint unless it joined. The
/// outer `Err`: the savepoint could not be set or ended, or the engine rolled the whole
/// transaction back by itself (a full disk can): the group must not be committed.
fn join_in_savepoint(
    tx: &Transaction<'_>,
    join: &Join,
) -> Result<Result<JoinOutcome, StoreError>, StoreError> {
    execute_cached(tx, "SAVEPOINT deal_join", [])?;
    let outcome = join_in(tx, join);
    if tx.is_autocommit() {
        return Err(outcome.err().unwrap_or_else(|| {
            StoreError::Unavailable("the deal joins' transaction ended unexpectedly".into())
        }));
    }
    if !matches!(outcome, Ok(JoinOutcome::Joined { .. })) {
        execute_cached(tx, "ROLLBACK TO deal_join", [])?;
    }
    execute_cached(tx, "RELEASE deal_join", [])?;
    Ok(outcome)
}

/// A join's reads and writes in `tx`, not committed: the caller commits or rolls back.
fn join_in(tx: &Transaction<'_>, join: &Join) -> Result<JoinOutcome, StoreError> {
    let Join { deal_id, order: accepted, completion_ids, at } = join;
    let (deal_id, at) = (*deal_id, *at);
    let Some(mut deal) = load(tx, deal_id)? else { return Ok(JoinOutcome::NotFound) };
    let order = &accepted.order;
    let admission = match deal.admit(&order.customer_id, order.id, at) {
        Ok(admission) => admission,
        Err(refusal) => return Ok(JoinOutcome::Refused(refusal)),
    };
    let order_id = order.id.as_uuid();
    let items =
        serde_json::to_string(&order.lines).expect("serializing validated order lines cannot fail");
    tx.prepare_cached(
        "INSERT INTO orders (id, customer_id, status, total_minor, items, created_at, idempotency_key, history)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )
    .and_then(|mut s| {
        s.execute(params![
            order_id.as_bytes(),
            order.customer_id.as_str(),
            order.status.as_str(),
            order.total.minor(),
            items,
            order.created_at.0,
            order.idempotency_key.as_ref().map(|k| k.as_str()),
            rows::history_json(&order.history),
        ])
    })
    .map_err(from_sqlite)?;
    for (sku, units) in units_by_sku([order]) {
        let held = execute_cached(
            tx,
            "UPDATE products SET reserved = reserved + ?1 WHERE sku = ?2",
            params![units, sku],
        )?;
        if held != 1 {
            return Err(StoreError::Conflict(format!("sku {sku} is not in the catalog")));
        }
    }
    execute_cached(
        tx,
        "INSERT INTO deal_members (deal_id, customer_id, order_id, joined_at) VALUES (?1, ?2, ?3, ?4)",
        params![
            deal_id.as_uuid().as_bytes(),
            order.customer_id.as_str(),
            order_id.as_bytes(),
            at.0
        ],
    )?;
    let joined =
        OutboxEvent::deal_order(order, RoutingKey::DealJoined, deal_id, accepted.event_id, at);
    insert_event(tx, order.id, &joined)?;
    let mut emitted = vec![joined];
    let mut completed = Vec::new();
    if admission == Admission::Completed {
        close(tx, &deal, at)?;
        completed = settle_members(tx, &deal, completion_ids, at, &mut emitted)?;
    }
    Ok(JoinOutcome::joined(deal, order, emitted, completed))
}

pub(crate) fn expire(
    conn: &mut Connection,
    deal_id: DealId,
    event_ids: &[Uuid],
    at: UnixMillis,
) -> Result<Option<ExpiredDeal>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(from_sqlite)?;
    let Some(mut deal) = load(&tx, deal_id)? else { return Ok(None) };
    if !deal.expire(at) {
        return Ok(None);
    }
    close(&tx, &deal, at)?;
    let mut emitted = Vec::new();
    let cancelled = settle_members(&tx, &deal, event_ids, at, &mut emitted)?;
    tx.commit().map_err(from_sqlite)?;
    Ok(Some(ExpiredDeal { deal, cancelled, emitted }))
}

fn close(tx: &Transaction<'_>, deal: &Deal, at: UnixMillis) -> Result<(), StoreError> {
    execute_cached(
        tx,
        "UPDATE deals SET status = ?1, closed_at = ?2 WHERE id = ?3",
        params![deal.status.as_str(), at.0, deal.id.as_uuid().as_bytes()],
    )
    .map(drop)
}

/// Moves every member's order on now that the deal is closed ([`Deal::settle_member`]),
/// writing each changed order and its `deal.*` event, with ids from `event_ids`.
fn settle_members(
    tx: &Transaction<'_>,
    deal: &Deal,
    event_ids: &[Uuid],
    at: UnixMillis,
    emitted: &mut Vec<OutboxEvent>,
) -> Result<Vec<Order>, StoreError> {
    let settlements =
        deal.members_with_event_ids(event_ids).map_err(|e| StoreError::Backend(e.into()))?;
    let mut changed = Vec::with_capacity(deal.members.len());
    let sql = format!("SELECT {} FROM orders WHERE id = ?1", rows::ORDER_COLUMNS);
    for (member, event_id) in settlements {
        let order_id = member.order_id;
        let found = tx
            .prepare_cached(&sql)
            .and_then(|mut s| {
                s.query_row([order_id.as_uuid().as_bytes()], rows::order_state).optional()
            })
            .map_err(from_sqlite)?
            .transpose()?;
        let Some((mut order, state)) = found else {
            return Err(corrupt(format!(
                "deal {} lists order {order_id}, which is missing",
                deal.id
            )));
        };
        let Some(settled) = deal.settle_member(&mut order, state, event_id, at) else {
            continue;
        };
        write_state(tx, order_id, &order, settled.next)?;
        for event in settled.emitted {
            insert_event(tx, order_id, &event)?;
            emitted.push(event);
        }
        changed.push(order);
    }
    Ok(changed)
}

pub(crate) fn set_limit(
    conn: &Connection,
    sku: &Sku,
    limit: Option<u32>,
) -> Result<(), StoreError> {
    match limit {
        Some(limit) => conn.execute(
            "INSERT INTO purchase_limits (sku, per_customer_limit) VALUES (?1, ?2)
             ON CONFLICT (sku) DO UPDATE SET per_customer_limit = excluded.per_customer_limit",
            params![sku.as_str(), limit],
        ),
        None => conn.execute("DELETE FROM purchase_limits WHERE sku = ?1", [sku.as_str()]),
    }
    .map(drop)
    .map_err(from_sqlite)
}

pub(crate) fn limits(conn: &Connection) -> Result<Vec<(Sku, u32)>, StoreError> {
    let mut stmt = conn
        .prepare("SELECT sku, per_customer_limit FROM purchase_limits ORDER BY sku")
        .map_err(from_sqlite)?;
    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?)))
        .map_err(from_sqlite)?
        .map(|row| {
            let (sku, limit) = row.map_err(from_sqlite)?;
            Ok((Sku::parse(sku).map_err(corrupt)?, limit))
        })
        .collect()
}

/// Units per customer of one SKU in orders not cancelled. A scan of the orders (items live
/// in a JSON column); it runs when a limit is loaded or set, not per order.
pub(crate) fn units_by_customer(
    conn: &Connection,
    sku: &Sku,
) -> Result<Vec<(CustomerId, u64)>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT o.customer_id, SUM(json_extract(line.value, '$.quantity'))
             FROM orders o, json_each(o.items) line
             WHERE o.status != 'cancelled' AND json_extract(line.value, '$.sku') = ?1
             GROUP BY o.customer_id",
        )
        .map_err(from_sqlite)?;
    stmt.query_map([sku.as_str()], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .map_err(from_sqlite)?
        .map(|row| {
            let (customer, units) = row.map_err(from_sqlite)?;
            Ok((CustomerId::parse(customer).map_err(corrupt)?, units.max(0) as u64))
        })
        .collect()
}
