//! Group-buy deals on MySQL: creation, lookups, and the join / completion / expiry
//! transactions. Same outcomes as the other stores; as on PostgreSQL, joins on several api
//! nodes are decided one at a time by locking the deal's row first (`FOR UPDATE`) and reading
//! its members only once the lock is held (READ COMMITTED: that read sees every join that
//! committed while this one waited). Rows are then locked in the store's usual order (member
//! orders by id, then products by SKU).

use std::collections::{BTreeMap, HashMap};

use ordermill_core::ports::{AcceptedOrder, ExpiredDeal, JoinOutcome, StoreError};
use ordermill_core::{
    Admission, Deal, DealId, Order, OrderId, OutboxEvent, RoutingKey, UnixMillis, units_by_sku,
};
use sqlx::MySqlConnection;
use uuid::Uuid;

use super::effects;
use super::error::{TxError, from_sqlx};
use super::orders::{add_units, limits_of};
use super::rows;
use super::tx::transaction;
use crate::batch::{self, Writes};

/// Stores a new open deal; `Conflict` when its SKU is not a product.
pub(crate) async fn create(conn: &mut MySqlConnection, deal: &Deal) -> Result<(), StoreError> {
    // One statement: the INSERT happens only if the product exists (products are never
    // deleted, so the check cannot be overtaken).
    let inserted = sqlx::query(
        "INSERT INTO deals (id, sku, deal_price_minor, group_size, created_at, expires_at, status)
         SELECT ?, sku, ?, ?, ?, ?, ? FROM products WHERE sku = ?",
    )
    .bind(deal.id.as_uuid())
    .bind(deal.deal_price.minor())
    .bind(group_size(deal))
    .bind(deal.created_at.0)
    .bind(deal.expires_at.0)
    .bind(deal.status.as_str())
    .bind(deal.sku.as_str())
    .execute(&mut *conn)
    .await
    .map_err(from_sqlx)?
    .rows_affected();
    if inserted == 0 {
        return Err(StoreError::Conflict(format!("sku {} is not in the catalog", deal.sku)));
    }
    Ok(())
}

/// A deal and its members, from one snapshot (one statement).
async fn read(conn: &mut MySqlConnection, id: DealId) -> Result<Option<Deal>, TxError> {
    let found = sqlx::query(rows::DEAL_SELECT).bind(id.as_uuid()).fetch_all(&mut *conn).await?;
    Ok(rows::deal(id, &found)?)
}

pub(crate) async fn get(
    conn: &mut MySqlConnection,
    id: DealId,
) -> Result<Option<Deal>, StoreError> {
    let found = sqlx::query(rows::DEAL_SELECT)
        .bind(id.as_uuid())
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    rows::deal(id, &found)
}

/// The order of a join whose outcome was unclear, read once no join of the deal is running: a
/// join locks the deal's row first and keeps it until its commit has ended, so the share lock
/// (its own statement, released when it ends) waits out one that outlived its caller.
pub(crate) async fn joined_order(
    conn: &mut MySqlConnection,
    deal_id: DealId,
    order_id: OrderId,
) -> Result<Option<Order>, StoreError> {
    sqlx::query("SELECT 1 FROM deals WHERE id = ? LOCK IN SHARE MODE")
        .bind(deal_id.as_uuid())
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    super::orders::by_id(conn, order_id.as_uuid()).await
}

/// Locks the deal's row for the rest of the transaction, then reads it with its members (two
/// statements on purpose: see the module comment).
async fn lock(conn: &mut MySqlConnection, id: DealId) -> Result<Option<Deal>, TxError> {
    let found = sqlx::query("SELECT 1 FROM deals WHERE id = ? FOR UPDATE")
        .bind(id.as_uuid())
        .fetch_optional(&mut *conn)
        .await?;
    if found.is_none() {
        return Ok(None);
    }
    read(conn, id).await
}

/// Open deals due at `now`, oldest deadline first (`deals_open_by_deadline`).
pub(crate) async fn due(
    conn: &mut MySqlConnection,
    now: UnixMillis,
    limit: usize,
) -> Result<Vec<DealId>, StoreError> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM deals WHERE status = 'open' AND expires_at <= ?
         ORDER BY expires_at LIMIT ?",
    )
    .bind(now.0)
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    Ok(ids.into_iter().map(DealId::from_uuid).collect())
}

/// Deals created in the range, newest first (a primary-key range: ids are UUIDv7).
pub(crate) async fn created(
    conn: &mut MySqlConnection,
    range: (UnixMillis, UnixMillis),
    before: Option<DealId>,
    limit: u32,
) -> Result<Vec<DealId>, StoreError> {
    let (low, high) = crate::decode::deal_bounds(range, before);
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM deals WHERE id >= ? AND id < ? ORDER BY id DESC LIMIT ?",
    )
    .bind(low)
    .bind(high)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    Ok(ids.into_iter().map(DealId::from_uuid).collect())
}

/// Joins `accepted.order`'s customer to the deal in ONE transaction; see
/// [`ordermill_core::ports::DealStore::join_deal`].
pub(crate) async fn join(
    conn: &mut MySqlConnection,
    deal_id: DealId,
    accepted: &AcceptedOrder,
    completion_ids: &[Uuid],
    at: UnixMillis,
) -> Result<JoinOutcome, StoreError> {
    transaction!(conn, |tx| join_in(&mut tx, deal_id, accepted, completion_ids, at))
}

async fn join_in(
    conn: &mut MySqlConnection,
    deal_id: DealId,
    accepted: &AcceptedOrder,
    completion_ids: &[Uuid],
    at: UnixMillis,
) -> Result<JoinOutcome, TxError> {
    // A refusal writes nothing; the transaction loop rolls back what is empty anyway.
    let Some(mut deal) = lock(conn, deal_id).await? else { return Ok(JoinOutcome::NotFound) };
    let order = &accepted.order;
    let admission = match deal.admit(&order.customer_id, order.id, at) {
        Ok(admission) => admission,
        Err(refusal) => return Ok(JoinOutcome::Refused(refusal)),
    };
    let joined =
        OutboxEvent::deal_order(order, RoutingKey::DealJoined, deal_id, accepted.event_id, at);
    if let Some(key) = &order.idempotency_key {
        sqlx::query(
            "INSERT INTO idempotency_keys (customer_id, idempotency_key, order_id) VALUES (?, ?, ?)",
        )
        .bind(order.customer_id.as_str())
        .bind(key.as_str())
        .bind(order.id.as_uuid())
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query(
        "INSERT INTO orders (id, customer_id, status, total_minor, items, created_at,
                             idempotency_key, history)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(order.id.as_uuid())
    .bind(order.customer_id.as_str())
    .bind(order.status.as_str())
    .bind(order.total.minor())
    .bind(rows::items_json(&order.lines))
    .bind(order.created_at.0)
    .bind(order.idempotency_key.as_ref().map(|k| k.as_str()))
    .bind(rows::history_json(&order.history))
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO deal_members (deal_id, customer_id, order_id, joined_at) VALUES (?, ?, ?, ?)",
    )
    .bind(deal_id.as_uuid())
    .bind(order.customer_id.as_str())
    .bind(order.id.as_uuid())
    .bind(at.0)
    .execute(&mut *conn)
    .await?;
    count_limited(conn, order).await?;
    sqlx::query(
        "INSERT INTO outbox (event_id, order_id, routing_key, payload, created_at)
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(joined.event_id)
    .bind(order.id.as_uuid())
    .bind(joined.routing_key.as_str())
    .bind(&joined.payload)
    .bind(joined.created_at.0)
    .execute(&mut *conn)
    .await?;
    let mut emitted = vec![joined];
    let mut completed = Vec::new();
    if admission == Admission::Completed {
        close(conn, &deal, at).await?;
        completed = settle_members(conn, &deal, completion_ids, at, &mut emitted).await?;
    }
    // Last: products are locked after orders everywhere in this store.
    reserve(conn, order).await?;
    Ok(JoinOutcome::joined(deal, order, emitted, completed))
}

/// The joining order's units of limited SKUs, counted like a commit's.
async fn count_limited(conn: &mut MySqlConnection, order: &Order) -> Result<(), TxError> {
    let wanted = units_by_sku([order]);
    let limits = limits_of(conn, wanted.keys().copied()).await?;
    let units: BTreeMap<(&str, &str), i64> = wanted
        .into_iter()
        .filter(|(sku, _)| limits.contains_key(*sku))
        .map(|(sku, units)| ((sku, order.customer_id.as_str()), units))
        .collect();
    add_units(conn, &units, &limits).await
}

/// Expires the deal in ONE transaction if it is still open and due at `at`.
pub(crate) async fn expire(
    conn: &mut MySqlConnection,
    deal_id: DealId,
    event_ids: &[Uuid],
    at: UnixMillis,
) -> Result<Option<ExpiredDeal>, StoreError> {
    transaction!(conn, |tx| expire_in(&mut tx, deal_id, event_ids, at))
}

async fn expire_in(
    conn: &mut MySqlConnection,
    deal_id: DealId,
    event_ids: &[Uuid],
    at: UnixMillis,
) -> Result<Option<ExpiredDeal>, TxError> {
    let deal = lock(conn, deal_id).await?;
    let Some(mut deal) = deal.filter(|d| d.is_due(at)) else { return Ok(None) };
    deal.expire(at);
    close(conn, &deal, at).await?;
    let mut emitted = Vec::new();
    let cancelled = settle_members(conn, &deal, event_ids, at, &mut emitted).await?;
    Ok(Some(ExpiredDeal { deal, cancelled, emitted }))
}

/// Records the deal's final status (the caller holds its lock).
async fn close(conn: &mut MySqlConnection, deal: &Deal, at: UnixMillis) -> Result<(), TxError> {
    sqlx::query("UPDATE deals SET status = ?, closed_at = ? WHERE id = ?")
        .bind(deal.status.as_str())
        .bind(at.0)
        .bind(deal.id.as_uuid())
        .execute(conn)
        .await?;
    Ok(())
}

/// `reserved += q` for each of the order's SKUs, in SKU order (as commits lock them);
/// `Conflict` for a SKU that is not a product.
async fn reserve(conn: &mut MySqlConnection, order: &Order) -> Result<(), TxError> {
    for (sku, quantity) in units_by_sku([order]) {
        let updated = sqlx::query("UPDATE products SET reserved = reserved + ? WHERE sku = ?")
            .bind(quantity)
            .bind(sku)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if updated != 1 {
            return Err(StoreError::Conflict(format!("sku {sku} is not in the catalog")).into());
        }
    }
    Ok(())
}

/// Locks the members' orders (by id) and settles them ([`batch::settle`]), writing each
/// changed order with its `deal.*` event.
async fn settle_members(
    conn: &mut MySqlConnection,
    deal: &Deal,
    event_ids: &[Uuid],
    at: UnixMillis,
    emitted: &mut Vec<OutboxEvent>,
) -> Result<Vec<Order>, TxError> {
    let mut ids: Vec<Uuid> = deal.members.iter().map(|m| m.order_id.as_uuid()).collect();
    ids.sort_unstable();
    let loaded: HashMap<_, _> = effects::lock_orders(conn, &ids)
        .await?
        .into_iter()
        .map(|(order, state)| (order.id.as_uuid(), (order, state)))
        .collect();
    let mut writes = Writes::default();
    let changed = batch::settle(deal, loaded, event_ids, at, emitted, &mut writes)?;
    let states: Vec<(&Order, ordermill_core::Lifecycle)> =
        changed.iter().map(|(o, s)| (o, *s)).collect();
    effects::write(conn, &states, writes).await?;
    Ok(changed.into_iter().map(|(order, _)| order).collect())
}

/// The group size as stored (`INT`); [`ordermill_core::GroupSize`] bounds it to 1000.
fn group_size(deal: &Deal) -> i32 {
    i32::try_from(deal.group_size.get()).unwrap_or(i32::MAX)
}
