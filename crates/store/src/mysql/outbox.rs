//! The outbox as broker relays on several api nodes see it: claims with a lease, so each
//! event is published by one node at a time and a dead node's claims run out.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ordermill_core::OutboxEvent;
use ordermill_core::ports::{Envelope, Outbox, StoreError};
use sqlx::{MySql, MySqlConnection, QueryBuilder, Row};
use uuid::Uuid;

use super::MysqlStore;
use super::error::{TxError, from_sqlx};
use super::rows;
use super::shape;
use super::tx::transaction;
use crate::deadline::{Limit, bounded};

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// Claims in one transaction: the oldest rows old enough and not under a live claim, walked
/// in `PRIMARY` order with `FOR UPDATE SKIP LOCKED` (a concurrent claimer passes over them),
/// stamped with a lease in the database's clock, then read with their order for the
/// order.created bodies (rebuilt, as on PostgreSQL, rather than stored with every commit).
async fn claim(
    conn: &mut MySqlConnection,
    limit: usize,
    min_age: Duration,
    lease: Duration,
) -> Result<Vec<Envelope>, TxError> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT event_id FROM outbox
         WHERE written_at <= NOW(3) - INTERVAL ? MICROSECOND
           AND (claimed_until IS NULL OR claimed_until <= NOW(3))
         ORDER BY event_id LIMIT ?
         FOR UPDATE SKIP LOCKED",
    )
    .bind(micros(min_age))
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *conn)
    .await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    for list in shape::padded(&ids) {
        let mut update =
            QueryBuilder::<MySql>::new("UPDATE outbox SET claimed_until = NOW(3) + INTERVAL ");
        update.push_bind(micros(lease)).push(" MICROSECOND WHERE event_id IN (");
        let mut separated = update.separated(", ");
        for id in list {
            separated.push_bind(id);
        }
        update.push(")");
        update.build().execute(&mut *conn).await?;
    }

    let mut found = Vec::with_capacity(ids.len());
    for list in shape::padded(&ids) {
        let mut select = QueryBuilder::<MySql>::new(format!(
            "SELECT outbox.event_id, outbox.routing_key, outbox.payload, {}
             FROM outbox LEFT JOIN orders ON outbox.payload IS NULL AND orders.id = outbox.order_id
             WHERE outbox.event_id IN (",
            rows::ORDER_COLUMNS
        ));
        let mut separated = select.separated(", ");
        for id in list {
            separated.push_bind(id);
        }
        select.push(") ORDER BY outbox.event_id");
        found.extend(select.build().fetch_all(&mut *conn).await?);
    }
    let mut envelopes = Vec::with_capacity(found.len());
    for row in &found {
        let event_id: Uuid = row.try_get(0)?;
        let routing_key: String = row.try_get(1)?;
        let payload: Option<String> = row.try_get(2)?;
        let payload = match payload {
            Some(payload) => payload,
            None => {
                let order_id: Option<Uuid> = row.try_get(3)?;
                if order_id.is_none() {
                    return Err(StoreError::Corrupt(format!(
                        "outbox event {event_id} has no body and its order is missing"
                    ))
                    .into());
                }
                let (order, _) = rows::order_state(row, 3)?;
                OutboxEvent::order_created(&order, event_id).payload
            }
        };
        envelopes.push(Envelope {
            event_id,
            routing_key: Arc::from(routing_key),
            payload: Arc::from(payload),
        });
    }
    Ok(envelopes)
}

/// Runs `statement` (a `DELETE` or `UPDATE` ending in `IN (`) for the rows of `events`, in
/// padded lists (the outbox's, and `stock_returns`' by order id).
pub(crate) async fn by_ids(
    conn: &mut MySqlConnection,
    statement: &str,
    events: &[Uuid],
) -> Result<(), StoreError> {
    for list in shape::padded(events) {
        let mut query = QueryBuilder::<MySql>::new(statement);
        let mut ids = query.separated(", ");
        for id in list {
            ids.push_bind(id);
        }
        query.push(")");
        query.build().execute(&mut *conn).await.map_err(from_sqlx)?;
    }
    Ok(())
}

#[async_trait]
impl Outbox for MysqlStore {
    async fn claim_unpublished(
        &self,
        limit: usize,
        min_age: Duration,
        lease: Duration,
    ) -> Result<Vec<Envelope>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        bounded!(self, Limit::Query, "an outbox claim", |conn| async {
            transaction!(conn, |tx| claim(&mut tx, limit, min_age, lease))
        })
    }

    async fn release_claims(&self, events: Vec<Uuid>) -> Result<(), StoreError> {
        let release = "UPDATE outbox SET claimed_until = NULL WHERE event_id IN (";
        bounded!(self, Limit::Query, "releasing outbox claims", |conn| by_ids(
            conn, release, &events
        ))
    }

    async fn mark_published(&self, events: Vec<Uuid>) -> Result<(), StoreError> {
        // Deleted, not flagged: once the broker has confirmed an event, the broker owns its
        // delivery and consumers deduplicate on the event id. Deleting keeps the outbox as
        // small as what is in flight, which keeps the claim's walk of PRIMARY cheap.
        let delete = "DELETE FROM outbox WHERE event_id IN (";
        bounded!(self, Limit::Query, "deleting published outbox rows", |conn| by_ids(
            conn, delete, &events
        ))
    }
    async fn oldest_unpublished_age(&self) -> Result<Option<Duration>, StoreError> {
        // The first row of PRIMARY (ids are time-ordered), not MIN(written_at), which would
        // scan an outbox that grows by every order while the broker is down.
        let micros: Option<i64> =
            bounded!(self, Limit::Query, "reading the outbox's oldest event", |conn| async {
                sqlx::query_scalar(
                    "SELECT TIMESTAMPDIFF(MICROSECOND, written_at, NOW(3))
                 FROM outbox ORDER BY event_id LIMIT 1",
                )
                .fetch_optional(conn)
                .await
                .map_err(from_sqlx)
            })?;
        Ok(micros.map(|us| Duration::from_micros(us.max(0).unsigned_abs())))
    }
}
