//! Group-buy deals on MySQL: creation, lookups, the expiry transaction, and what a deal's
//! closing writes (shared with the joins' transaction, `join_group.rs`). Same outcomes as the
//! other stores; as on PostgreSQL, joins and expiries on several api nodes are decided one at
//! a time by locking the deals' rows first (`FOR UPDATE`) and reading their members only once
//! the locks are held (READ COMMITTED: that read sees every join that committed while this
//! one waited). Rows are then locked in the store's usual order (member orders by id, then
//! products by SKU).

use std::collections::HashMap;

use ordermill_core::ports::{ExpiredDeal, StoreError};
use ordermill_core::{Deal, DealId, Order, OrderId, OutboxEvent, UnixMillis};
use sqlx::{MySql, MySqlConnection, QueryBuilder};
use uuid::Uuid;

use super::error::{TxError, from_sqlx};
use super::tx::transaction;
use super::{effects, rows, shape};
use crate::batch::{Closing, Settled, Writes};

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
    let closing = [(&deal, event_ids, at)];
    close(conn, &closing).await?;
    let (cancelled, emitted) = settle(conn, &closing).await?.remove(&deal_id).unwrap_or_default();
    Ok(Some(ExpiredDeal { deal, cancelled, emitted }))
}

/// Records each deal's final status (the caller holds their locks): one `UPDATE ... JOIN` a
/// derived table of the new values.
pub(super) async fn close(
    conn: &mut MySqlConnection,
    closing: &[Closing<'_>],
) -> Result<(), TxError> {
    for list in shape::padded(closing) {
        let mut query = QueryBuilder::<MySql>::new("UPDATE deals d JOIN (");
        effects::derived_rows(&mut query, &list, &["id", "status", "closed_at"], |q, row, c| {
            let (deal, _, at) = row;
            match c {
                0 => q.push_bind(deal.id.as_uuid()),
                1 => q.push_bind(deal.status.as_str()),
                _ => q.push_bind(at.0),
            };
        });
        query.push(") c ON d.id = c.id SET d.status = c.status, d.closed_at = c.closed_at");
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Moves every member's order on now that its deal is closed ([`Deal::settle_member`]) and
/// writes each changed order with its `deal.*` event, in one read and one write for all the
/// deals. Returns, by deal, the orders that moved and their events.
///
/// The member orders of every deal are locked together, by id, as consumers lock orders: a
/// deal at a time would take them out of order when two deals' members interleave.
pub(super) async fn settle(
    conn: &mut MySqlConnection,
    closing: &[Closing<'_>],
) -> Result<HashMap<DealId, (Vec<Order>, Vec<OutboxEvent>)>, TxError> {
    let mut ids: Vec<Uuid> = closing
        .iter()
        .flat_map(|(deal, _, _)| deal.members.iter().map(|m| m.order_id.as_uuid()))
        .collect();
    ids.sort_unstable();
    let loaded: HashMap<_, _> = effects::lock_orders(conn, &ids)
        .await?
        .into_iter()
        .map(|(order, state)| (order.id.as_uuid(), (order, state)))
        .collect();
    let mut writes = Writes::default();
    let settled = Settled::of(closing, loaded, &mut writes)?;
    effects::write(conn, &settled.states(), writes).await?;
    Ok(settled.by_deal())
}

/// The group size as stored (`INT`); [`ordermill_core::GroupSize`] bounds it to 1000.
fn group_size(deal: &Deal) -> i32 {
    i32::try_from(deal.group_size.get()).unwrap_or(i32::MAX)
}
