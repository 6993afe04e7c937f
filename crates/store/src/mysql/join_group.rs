//! Deal joins decided together in ONE transaction (queued on this node by
//! `crate::join_queue`), with a number of statements that does not grow with the joins: the
//! deals locked (in id order) and read, every join decided in queue order against them in
//! Rust ([`Decisions`]), the admitted joins' keys, orders, memberships and `deal.joined` rows
//! written as multi-row INSERTs, the deals they filled closed and settled, `reserved` added
//! once per SKU, and the per-customer counts raised as a group commit raises them.
//!
//! One join per transaction held the deal SKU's product row from its `UPDATE` until its
//! commit, so joins on one SKU ran one commit at a time across every deal and node; here a
//! transaction takes that row once for all its joins.
//!
//! Locks are taken in the store's order: deals (by id), then orders (by id), then products
//! (by SKU), then `customer_units` (by key, after products, as a group commit takes them).
//! A conflict that happens anyway (1213/1205) runs the whole transaction again (`tx.rs`),
//! deciding every join afresh.

use std::collections::HashMap;
use std::sync::Arc;

use ordermill_core::ports::{JoinOutcome, StoreError};
use ordermill_core::{Deal, DealId, Order, OutboxEvent, RoutingKey, units_by_sku};
use sqlx::{MySql, MySqlConnection, QueryBuilder};
use uuid::Uuid;

use super::deals::{close, settle};
use super::error::TxError;
use super::orders::{count_limited, insert_orders, limits_of};
use super::tx::transaction;
use super::{rows, shape};
use crate::deadline::{Calls, Limit, bounded};
use crate::join::{Decisions, Join};
use crate::join_queue::JoinsTogether;

/// The store's connections, for its join queue.
pub(super) struct Joiner {
    pub calls: Arc<Calls<MySql>>,
}

impl JoinsTogether for Joiner {
    async fn together(&self, joins: &[Join]) -> Result<Vec<JoinOutcome>, StoreError> {
        bounded!(self, Limit::Query, "a deal join transaction", |conn| join_together(conn, joins))
    }
}

/// Decides `joins` in queue order and writes the admitted ones, all in one transaction; one
/// outcome per join, in order. Nothing is written unless everything is: a reused idempotency
/// key (`Conflict`) or a customer past a purchase limit (`LimitExceeded`) fails the whole
/// group, and the join queue then decides each join in a transaction of its own.
pub(crate) async fn join_together(
    conn: &mut MySqlConnection,
    joins: &[Join],
) -> Result<Vec<JoinOutcome>, StoreError> {
    transaction!(conn, |tx| join_in(&mut tx, joins))
}

async fn join_in(conn: &mut MySqlConnection, joins: &[Join]) -> Result<Vec<JoinOutcome>, TxError> {
    let decisions = Decisions::new(joins, lock_each(conn, joins).await?);
    let admitted = decisions.admitted();
    if admitted.is_empty() {
        // Nothing to write; the (empty) commit frees the deals' locks.
        return Ok(decisions.outcomes(HashMap::new()));
    }
    let orders: Vec<&Order> = admitted.iter().map(|(join, _)| &join.order.order).collect();
    // Read before the product and count locks below, as a group commit reads them.
    let limits = limits_of(conn, units_by_sku(orders.iter().copied()).into_keys()).await?;
    insert_orders(conn, &orders).await?;
    insert_members(conn, &admitted).await?;
    let filled = decisions.filled();
    let mut settled = HashMap::new();
    if !filled.is_empty() {
        close(conn, &filled).await?;
        settled = settle(conn, &filled).await?;
    }
    reserve(conn, &orders).await?;
    count_limited(conn, &orders, &limits).await?;
    Ok(decisions.outcomes(settled))
}

/// Locks the joins' deals for the rest of the transaction, in id order, then reads them with
/// their members (two statements on purpose: see `deals.rs`).
async fn lock_each(
    conn: &mut MySqlConnection,
    joins: &[Join],
) -> Result<HashMap<DealId, Deal>, TxError> {
    let mut ids: Vec<Uuid> = joins.iter().map(|join| join.deal_id.as_uuid()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut found = Vec::with_capacity(ids.len());
    for list in shape::padded(&ids) {
        let mut query = QueryBuilder::<MySql>::new("SELECT id FROM deals WHERE id IN (");
        let mut separated = query.separated(", ");
        for id in &list {
            separated.push_bind(*id);
        }
        query.push(") ORDER BY id FOR UPDATE");
        let locked: Vec<Uuid> = query.build_query_scalar().fetch_all(&mut *conn).await?;
        found.extend(locked);
    }
    let mut deals = HashMap::with_capacity(found.len());
    for list in shape::padded(&found) {
        let sql = rows::deals_select(list.len());
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in list {
            query = query.bind(id);
        }
        deals.extend(rows::deals(&query.fetch_all(&mut *conn).await?)?);
    }
    Ok(deals)
}

/// The admitted joins' memberships and `deal.joined` outbox rows (their orders and keys are
/// `insert_orders`').
async fn insert_members(
    conn: &mut MySqlConnection,
    admitted: &[(&Join, &OutboxEvent)],
) -> Result<(), TxError> {
    for chunk in shape::chunks(admitted) {
        let mut query = QueryBuilder::<MySql>::new(
            "INSERT INTO deal_members (deal_id, customer_id, order_id, joined_at) ",
        );
        query.push_values(chunk, |mut row, (join, _)| {
            row.push_bind(join.deal_id.as_uuid())
                .push_bind(join.order.order.customer_id.as_str())
                .push_bind(join.order.order.id.as_uuid())
                .push_bind(join.at.0);
        });
        query.build().execute(&mut *conn).await?;
        let mut query = QueryBuilder::<MySql>::new(
            "INSERT INTO outbox (event_id, order_id, routing_key, payload, created_at) ",
        );
        query.push_values(chunk, |mut row, (join, joined)| {
            row.push_bind(joined.event_id)
                .push_bind(join.order.order.id.as_uuid())
                .push_bind(RoutingKey::DealJoined.as_str())
                .push_bind(joined.payload.as_str())
                .push_bind(joined.created_at.0);
        });
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// `reserved += q` for each SKU of `orders`, summed, in SKU order (as commits lock them);
/// `Conflict` for a SKU that is not a product.
async fn reserve(conn: &mut MySqlConnection, orders: &[&Order]) -> Result<(), TxError> {
    for (sku, quantity) in units_by_sku(orders.iter().copied()) {
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
