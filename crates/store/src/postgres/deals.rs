//! Group-buy deals: creation, lookups, the expiry transaction, and what a deal's closing
//! writes (shared with the joins' transaction, `join_group.rs`).
//!
//! Same outcomes as the SQLite store (`sqlite/deals.rs`). What differs is how joins on several
//! api nodes are decided one at a time: SQLite has one writer, here each joins' transaction
//! and each expiry locks the deals' rows (`SELECT ... FOR UPDATE`) first, and reads the members
//! only once it holds the locks. Rows are then locked in the store's usual order (member
//! orders by id, then products by SKU; see `mod.rs`), so a join never deadlocks with a
//! consumer's batch.

use std::collections::HashMap;

use ordermill_core::ports::{ExpiredDeal, StoreError};
use ordermill_core::{Deal, DealId, Lifecycle, Order, OrderId, OutboxEvent, UnixMillis};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::effects;
use super::error::from_sqlx;
use super::rows;
use crate::batch::{Closing, Settled, Writes};

/// Stores a new open deal; `Conflict` when its SKU is not a product.
pub(crate) async fn create(conn: &mut PgConnection, deal: &Deal) -> Result<(), StoreError> {
    // One statement: the INSERT happens only if the product exists. Products are never
    // deleted, so the check cannot be overtaken.
    let inserted = sqlx::query(
        "INSERT INTO deals (id, sku, deal_price_minor, group_size, created_at, expires_at, status)
         SELECT $1, sku, $3, $4, $5, $6, $7 FROM products WHERE sku = $2",
    )
    .bind(deal.id.as_uuid())
    .bind(deal.sku.as_str())
    .bind(deal.deal_price.minor())
    .bind(group_size(deal))
    .bind(deal.created_at.0)
    .bind(deal.expires_at.0)
    .bind(deal.status.as_str())
    .execute(&mut *conn)
    .await
    .map_err(from_sqlx)?
    .rows_affected();
    if inserted == 0 {
        return Err(StoreError::Conflict(format!("sku {} is not in the catalog", deal.sku)));
    }
    Ok(())
}

/// A deal and its members, from one snapshot.
pub(crate) async fn get(
    conn: impl sqlx::PgExecutor<'_>,
    id: DealId,
) -> Result<Option<Deal>, StoreError> {
    sqlx::query(rows::DEAL_SELECT)
        .bind(id.as_uuid())
        .fetch_optional(conn)
        .await
        .map_err(from_sqlx)?
        .map(|row| rows::deal(id, &row))
        .transpose()
}

/// The order of a join whose outcome was unclear, read once no join of the deal is running: a
/// join locks the deal's row first and keeps it until its commit has ended, so this
/// statement's share lock waits out one that outlived its caller, and the read after it sees
/// whether it landed.
pub(crate) async fn joined_order(
    conn: &mut PgConnection,
    deal_id: DealId,
    order_id: OrderId,
) -> Result<Option<Order>, StoreError> {
    sqlx::query("SELECT 1 FROM deals WHERE id = $1 FOR SHARE")
        .bind(deal_id.as_uuid())
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    super::orders::by_id(conn, order_id.as_uuid()).await
}

/// Locks the deal's row for the rest of the transaction and reads it with its members.
///
/// Two statements on purpose: under READ COMMITTED each statement takes its snapshot when it
/// starts, so members read by the statement AFTER the lock was granted include every join
/// that committed while we waited for it. (Reading them in the locking statement would use
/// the snapshot from before the wait and miss the member that just took the last slot.)
async fn lock(conn: &mut PgConnection, id: DealId) -> Result<Option<Deal>, StoreError> {
    let found = sqlx::query("SELECT 1 FROM deals WHERE id = $1 FOR UPDATE")
        .bind(id.as_uuid())
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    if found.is_none() {
        return Ok(None);
    }
    get(conn, id).await
}

/// Open deals due at `now`, oldest deadline first (the partial index `deals_open_by_deadline`).
pub(crate) async fn due(
    conn: &mut PgConnection,
    now: UnixMillis,
    limit: usize,
) -> Result<Vec<DealId>, StoreError> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM deals WHERE status = 'open' AND expires_at <= $1
         ORDER BY expires_at LIMIT $2",
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
    conn: &mut PgConnection,
    range: (UnixMillis, UnixMillis),
    before: Option<DealId>,
    limit: u32,
) -> Result<Vec<DealId>, StoreError> {
    let (low, high) = crate::decode::deal_bounds(range, before);
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM deals WHERE id >= $1 AND id < $2 ORDER BY id DESC LIMIT $3",
    )
    .bind(low)
    .bind(high)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    Ok(ids.into_iter().map(DealId::from_uuid).collect())
}

/// Expires the deal in ONE transaction if it is still open and due at `at`; see
/// [`ordermill_core::ports::DealStore::expire_deal`].
pub(crate) async fn expire(
    conn: &mut PgConnection,
    deal_id: DealId,
    event_ids: &[Uuid],
    at: UnixMillis,
) -> Result<Option<ExpiredDeal>, StoreError> {
    let mut tx = conn.begin().await.map_err(from_sqlx)?;
    let deal = lock(&mut tx, deal_id).await?;
    let Some(mut deal) = deal.filter(|d| d.is_due(at)) else {
        tx.rollback().await.map_err(from_sqlx)?;
        return Ok(None);
    };
    deal.expire(at);
    let closing = [(&deal, event_ids, at)];
    close(&mut tx, &closing).await?;
    let (cancelled, emitted) =
        settle(&mut tx, &closing).await?.remove(&deal_id).unwrap_or_default();
    tx.commit().await.map_err(from_sqlx)?;
    Ok(Some(ExpiredDeal { deal, cancelled, emitted }))
}

/// Records each deal's final status.
pub(super) async fn close(
    conn: &mut PgConnection,
    closing: &[Closing<'_>],
) -> Result<(), StoreError> {
    let ids: Vec<Uuid> = closing.iter().map(|(deal, _, _)| deal.id.as_uuid()).collect();
    let statuses: Vec<&str> = closing.iter().map(|(deal, _, _)| deal.status.as_str()).collect();
    let at: Vec<i64> = closing.iter().map(|(_, _, at)| at.0).collect();
    sqlx::query(
        "UPDATE deals d SET status = c.status, closed_at = c.at
         FROM UNNEST($1::uuid[], $2::text[], $3::bigint[]) AS c(id, status, at)
         WHERE d.id = c.id",
    )
    .bind(ids)
    .bind(statuses)
    .bind(at)
    .execute(conn)
    .await
    .map_err(from_sqlx)?;
    Ok(())
}

/// Moves every member's order on now that its deal is closed ([`Deal::settle_member`]) and
/// writes each changed order with its `deal.*` event, in one read and one write for all the
/// deals. Returns, by deal, the orders that moved and their events.
///
/// The member orders of every deal are locked together, by id, as consumers lock orders: a
/// deal at a time would take them out of order when two deals' members interleave.
pub(super) async fn settle(
    conn: &mut PgConnection,
    closing: &[Closing<'_>],
) -> Result<HashMap<DealId, (Vec<Order>, Vec<OutboxEvent>)>, StoreError> {
    let mut ids: Vec<Uuid> = closing
        .iter()
        .flat_map(|(deal, _, _)| deal.members.iter().map(|m| m.order_id.as_uuid()))
        .collect();
    ids.sort_unstable();
    // Locked in id order (the ORDER BY sits below the row locks), as consumers lock them; the
    // range prunes partitions, as in the effects' lock (effects.rs).
    let sql = format!(
        "SELECT {} FROM orders WHERE id = ANY($1::uuid[]) AND id BETWEEN $2 AND $3
         ORDER BY id FOR UPDATE",
        rows::ORDER_COLUMNS
    );
    let (first, last) = rows::id_range(&ids);
    let mut loaded: HashMap<Uuid, (Order, Lifecycle)> = HashMap::with_capacity(ids.len());
    for row in sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(ids)
        .bind(first)
        .bind(last)
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?
    {
        let (order, state) = rows::order_state(&row, 0)?;
        loaded.insert(order.id.as_uuid(), (order, state));
    }

    let mut writes = Writes::default();
    let settled = Settled::of(closing, loaded, &mut writes)?;
    effects::write(conn, &settled.states(), writes).await?;
    Ok(settled.by_deal())
}

/// The group size as stored (`integer`); [`ordermill_core::GroupSize`] bounds it to 1000.
fn group_size(deal: &Deal) -> i32 {
    i32::try_from(deal.group_size.get()).unwrap_or(i32::MAX)
}
