//! Deal joins decided together in ONE transaction, with a fixed number of statements however
//! many joins and deals it carries: the deals locked (in id order) and read, every join decided
//! in queue order against them in Rust ([`Decisions`]), the admitted joins' rows written from
//! arrays, the deals they filled closed and settled, and `reserved` added once per SKU.
//!
//! One join per transaction held the deal SKU's product row from its `UPDATE` until its
//! commit, so joins on one SKU, across every deal and node, ran one commit at a time
//! (docs/BENCHMARKS.md, "Group-buying joins"). Here a transaction takes that row once for all
//! its joins.
//!
//! Locks are taken as every transaction of this store takes them: deals (by id), then orders
//! (by id), then products (by SKU).

use std::collections::HashMap;
use std::sync::Arc;

use ordermill_core::ports::{JoinOutcome, StoreError};
use ordermill_core::{Deal, DealId, Order, OutboxEvent, RoutingKey, units_by_sku};
use sqlx::{Connection, PgConnection, Postgres};
use uuid::Uuid;

use super::deals::{close, settle};
use super::error::from_sqlx;
use super::limits::limits_counted;
use super::orders::OrderArrays;
use super::rows;
use crate::deadline::{Calls, Limit, bounded};
use crate::join::{Decisions, Join};
use crate::join_queue::JoinsTogether;

/// The admitted joins' orders, idempotency keys, memberships and `deal.joined` outbox rows, as
/// one statement from arrays. `$1`–`$7` and `$10` are bound as the group commit binds them
/// (`orders.rs`), so the per-customer limit check is the same text. It fails as a whole: on a
/// reused idempotency key (a unique violation of `idempotency_keys` → `Conflict`) and on a
/// customer past a SKU's limit counting their orders through every node (→ `LimitExceeded`);
/// the join queue then decides each join in a transaction of its own.
const INSERT_MEMBERS: &str = concat!(
    "
WITH new_keys AS (
    INSERT INTO idempotency_keys (customer_id, idempotency_key, order_id)
    SELECT k.customer_id, k.key, k.id
    FROM UNNEST($2::text[], $7::text[], $1::uuid[]) AS k(customer_id, key, id)
    WHERE k.key IS NOT NULL
),
new_orders AS (
    INSERT INTO orders (id, customer_id, status, total_minor, items, created_at, idempotency_key,
                        history)
    SELECT o.id, o.customer_id, o.status, o.total_minor, o.items::json, o.created_at, o.key,
           o.history::json
    FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[],
                $7::text[], $8::text[])
        AS o(id, customer_id, status, total_minor, items, created_at, key, history)
),
memberships AS (
    INSERT INTO deal_members (deal_id, customer_id, order_id, joined_at)
    SELECT * FROM UNNEST($9::uuid[], $2::text[], $1::uuid[], $11::bigint[])
),
new_events AS (
    INSERT INTO outbox (event_id, order_id, routing_key, payload, created_at)
    SELECT e.event_id, e.order_id, $12, e.payload, e.created_at
    FROM UNNEST($13::uuid[], $1::uuid[], $14::text[], $15::bigint[])
        AS e(event_id, order_id, payload, created_at)
),
",
    limits_counted!(),
    "
SELECT ordermill_require_limit(
    NOT EXISTS (SELECT 1 FROM over),
    coalesce((SELECT string_agg(sku, ', ') FROM over), ''))"
);

/// The store's connections, for its join queue (`crate::join_queue`).
pub(super) struct Joiner {
    pub calls: Arc<Calls<Postgres>>,
}

impl JoinsTogether for Joiner {
    async fn together(&self, joins: &[Join]) -> Result<Vec<JoinOutcome>, StoreError> {
        bounded!(self, Limit::Query, "a deal join transaction", |conn| join_together(conn, joins))
    }
}

/// Decides `joins` in queue order and writes the admitted ones, all in one transaction; one
/// outcome per join, in order. Nothing is written unless everything is: on an error the
/// transaction is rolled back (dropped) and the error is the whole group's.
pub(crate) async fn join_together(
    conn: &mut PgConnection,
    joins: &[Join],
) -> Result<Vec<JoinOutcome>, StoreError> {
    let mut tx = conn.begin().await.map_err(from_sqlx)?;
    let decisions = Decisions::new(joins, lock_each(&mut tx, joins).await?);
    let admitted = decisions.admitted();
    if admitted.is_empty() {
        // Nothing to write; the deals' locks are freed at once for the joins queued behind.
        tx.rollback().await.map_err(from_sqlx)?;
        return Ok(decisions.outcomes(HashMap::new()));
    }
    insert_members(&mut tx, &admitted).await?;
    let filled = decisions.filled();
    let mut settled = HashMap::new();
    if !filled.is_empty() {
        close(&mut tx, &filled).await?;
        settled = settle(&mut tx, &filled).await?;
    }
    // Last: products are locked after orders everywhere in this store.
    reserve(&mut tx, admitted.iter().map(|(join, _)| &join.order.order)).await?;
    tx.commit().await.map_err(from_sqlx)?;
    Ok(decisions.outcomes(settled))
}

/// Locks the joins' deals for the rest of the transaction, in id order, and reads them with
/// their members (those not found are missing from the map).
///
/// Two statements on purpose, as in `deals::lock`: the read after the lock was granted sees
/// every join that committed while we waited for it.
async fn lock_each(
    conn: &mut PgConnection,
    joins: &[Join],
) -> Result<HashMap<DealId, Deal>, StoreError> {
    let mut ids: Vec<Uuid> = joins.iter().map(|join| join.deal_id.as_uuid()).collect();
    ids.sort_unstable();
    ids.dedup();
    let found: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM deals WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    let mut deals = HashMap::with_capacity(found.len());
    for row in sqlx::query(rows::DEALS_SELECT)
        .bind(found)
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?
    {
        let id =
            DealId::from_uuid(sqlx::Row::try_get(&row, rows::DEAL_ID_COLUMN).map_err(from_sqlx)?);
        deals.insert(id, rows::deal(id, &row)?);
    }
    Ok(deals)
}

/// [`INSERT_MEMBERS`] for the admitted joins.
async fn insert_members(
    conn: &mut PgConnection,
    admitted: &[(&Join, &OutboxEvent)],
) -> Result<(), StoreError> {
    let n = admitted.len();
    let mut histories = Vec::with_capacity(n);
    let mut deals = Vec::with_capacity(n);
    let mut joined_at = Vec::with_capacity(n);
    let mut events = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    let mut events_at = Vec::with_capacity(n);
    for (join, joined) in admitted {
        histories.push(rows::history_json(&join.order.order.history));
        deals.push(join.deal_id.as_uuid());
        joined_at.push(join.at.0);
        events.push(joined.event_id);
        payloads.push(joined.payload.as_str());
        events_at.push(joined.created_at.0);
    }
    let orders = || admitted.iter().map(|(join, _)| &join.order.order);
    let (skus, _): (Vec<&str>, Vec<i64>) = units_by_sku(orders()).into_iter().unzip();
    OrderArrays::of(orders())
        .bind(sqlx::query(INSERT_MEMBERS))
        .bind(histories)
        .bind(deals)
        .bind(skus)
        .bind(joined_at)
        .bind(RoutingKey::DealJoined.as_str())
        .bind(events)
        .bind(payloads)
        .bind(events_at)
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

/// `reserved += q` for each SKU of `orders`, summed, in SKU order (as commits lock them);
/// `Conflict` for a SKU that is not a product.
async fn reserve(
    conn: &mut PgConnection,
    orders: impl Iterator<Item = &Order>,
) -> Result<(), StoreError> {
    for (sku, quantity) in units_by_sku(orders) {
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
