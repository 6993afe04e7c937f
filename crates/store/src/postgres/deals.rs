//! Group-buy deals: creation, lookups, and the join / completion / expiry transactions.
//!
//! Same outcomes as the SQLite store (`sqlite/deals.rs`). What differs is how joins on several
//! api nodes are decided one at a time: SQLite has one writer, here each join and expiry locks
//! the deal's row (`SELECT ... FOR UPDATE`) first, and reads the members only once it holds
//! the lock. Rows are then locked in the store's usual order (member orders by id, then
//! products by SKU; see `mod.rs`), so a join never deadlocks with a consumer's batch.

use std::collections::HashMap;

use ordermill_core::ports::{AcceptedOrder, ExpiredDeal, JoinOutcome, StoreError};
use ordermill_core::{
    Admission, Deal, DealId, Lifecycle, Order, OrderId, OutboxEvent, RoutingKey, UnixMillis,
    units_by_sku,
};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use super::effects;
use super::error::from_sqlx;
use super::rows;
use crate::batch::{self, Writes};

/// The joining order, its membership and its `deal.joined` outbox row (body stored, like
/// every event but order.created) as one statement. A reused idempotency key fails it with a
/// unique violation of `idempotency_keys` (→ `Conflict`); so would a second membership, which
/// the deal lock and `Deal::admit` rule out first. A customer past the SKU's per-customer
/// limit, counting their orders through every node, fails it too (0006 → `LimitExceeded`).
const INSERT_MEMBER: &str = "
WITH new_key AS (
    INSERT INTO idempotency_keys (customer_id, idempotency_key, order_id)
    SELECT $2, $7, $1 WHERE $7::text IS NOT NULL
),
new_order AS (
    INSERT INTO orders (id, customer_id, status, total_minor, items, created_at, idempotency_key,
                        history)
    VALUES ($1, $2, $3, $4, $5::json, $6, $7, $8::json)
),
membership AS (
    INSERT INTO deal_members (deal_id, customer_id, order_id, joined_at)
    VALUES ($9, $2, $1, $10)
),
limited AS (
    SELECT l.sku, l.per_customer_limit
    FROM purchase_limits l JOIN json_array_elements($5::json) AS line ON l.sku = line ->> 'sku'
),
counted AS (
    INSERT INTO customer_units AS c (sku, customer_id, units)
    SELECT line ->> 'sku', $2, sum((line ->> 'quantity')::bigint)
    FROM json_array_elements($5::json) AS line
    WHERE line ->> 'sku' IN (SELECT sku FROM limited)
    GROUP BY 1 ORDER BY 1
    ON CONFLICT (sku, customer_id) DO UPDATE SET units = c.units + EXCLUDED.units
    RETURNING c.sku, c.units
)
INSERT INTO outbox (event_id, order_id, routing_key, payload, created_at)
SELECT $11, $1, $12, $13, $14
WHERE ordermill_require_limit(
    NOT EXISTS (SELECT 1 FROM counted JOIN limited USING (sku)
                WHERE counted.units > limited.per_customer_limit),
    coalesce((SELECT string_agg(DISTINCT counted.sku, ', ') FROM counted JOIN limited USING (sku)
              WHERE counted.units > limited.per_customer_limit), ''))";

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

/// Joins `accepted.order`'s customer to the deal in ONE transaction; see
/// [`ordermill_core::ports::DealStore::join_deal`].
pub(crate) async fn join(
    conn: &mut PgConnection,
    deal_id: DealId,
    accepted: &AcceptedOrder,
    completion_ids: &[Uuid],
    at: UnixMillis,
) -> Result<JoinOutcome, StoreError> {
    let mut tx = conn.begin().await.map_err(from_sqlx)?;
    let Some(mut deal) = lock(&mut tx, deal_id).await? else {
        // Nothing written; rolled back now rather than when the connection is reused.
        tx.rollback().await.map_err(from_sqlx)?;
        return Ok(JoinOutcome::NotFound);
    };
    let order = &accepted.order;
    let admission = match deal.admit(&order.customer_id, order.id, at) {
        Ok(admission) => admission,
        Err(refusal) => {
            // Frees the deal's lock at once for the joins queued behind this one.
            tx.rollback().await.map_err(from_sqlx)?;
            return Ok(JoinOutcome::Refused(refusal));
        }
    };
    let joined =
        OutboxEvent::deal_order(order, RoutingKey::DealJoined, deal_id, accepted.event_id, at);
    sqlx::query(INSERT_MEMBER)
        .bind(order.id.as_uuid())
        .bind(order.customer_id.as_str())
        .bind(order.status.as_str())
        .bind(order.total.minor())
        .bind(rows::items_json(&order.lines))
        .bind(order.created_at.0)
        .bind(order.idempotency_key.as_ref().map(|k| k.as_str()))
        .bind(rows::history_json(&order.history))
        .bind(deal_id.as_uuid())
        .bind(at.0)
        .bind(joined.event_id)
        .bind(joined.routing_key.as_str())
        .bind(&joined.payload)
        .bind(joined.created_at.0)
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
    let mut emitted = vec![joined];
    let mut completed = Vec::new();
    if admission == Admission::Completed {
        close(&mut tx, &deal, at).await?;
        completed = settle_members(&mut tx, &deal, completion_ids, at, &mut emitted).await?;
    }
    // Last: products are locked after orders everywhere in this store.
    reserve(&mut tx, order).await?;
    tx.commit().await.map_err(from_sqlx)?;
    Ok(JoinOutcome::joined(deal, order, emitted, completed))
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
    close(&mut tx, &deal, at).await?;
    let mut emitted = Vec::new();
    let cancelled = settle_members(&mut tx, &deal, event_ids, at, &mut emitted).await?;
    tx.commit().await.map_err(from_sqlx)?;
    Ok(Some(ExpiredDeal { deal, cancelled, emitted }))
}

/// Records the deal's final status (the caller holds its lock).
async fn close(conn: &mut PgConnection, deal: &Deal, at: UnixMillis) -> Result<(), StoreError> {
    sqlx::query("UPDATE deals SET status = $1, closed_at = $2 WHERE id = $3")
        .bind(deal.status.as_str())
        .bind(at.0)
        .bind(deal.id.as_uuid())
        .execute(conn)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

/// `reserved += q` for each of the order's SKUs, in SKU order (as commits lock them);
/// `Conflict` for a SKU that is not a product.
async fn reserve(conn: &mut PgConnection, order: &Order) -> Result<(), StoreError> {
    for (sku, quantity) in units_by_sku([order]) {
        let updated = sqlx::query("UPDATE products SET reserved = reserved + $1 WHERE sku = $2")
            .bind(quantity)
            .bind(sku)
            .execute(&mut *conn)
            .await
            .map_err(from_sqlx)?
            .rows_affected();
        if updated != 1 {
            return Err(StoreError::Conflict(format!("sku {sku} is not in the catalog")));
        }
    }
    Ok(())
}

/// Moves every member's order on now that the deal is closed ([`Deal::settle_member`]) and
/// writes each changed order with its `deal.*` event, ids from `event_ids` in member order.
/// The orders are locked here, by id.
async fn settle_members(
    conn: &mut PgConnection,
    deal: &Deal,
    event_ids: &[Uuid],
    at: UnixMillis,
    emitted: &mut Vec<OutboxEvent>,
) -> Result<Vec<Order>, StoreError> {
    let mut ids: Vec<Uuid> = deal.members.iter().map(|m| m.order_id.as_uuid()).collect();
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
    let changed = batch::settle(deal, loaded, event_ids, at, emitted, &mut writes)?;
    let states: Vec<(&Order, Lifecycle)> = changed.iter().map(|(o, s)| (o, *s)).collect();
    effects::write(conn, &states, writes).await?;
    Ok(changed.into_iter().map(|(order, _)| order).collect())
}

/// The group size as stored (`integer`); [`ordermill_core::GroupSize`] bounds it to 1000.
fn group_size(deal: &Deal) -> i32 {
    i32::try_from(deal.group_size.get()).unwrap_or(i32::MAX)
}
