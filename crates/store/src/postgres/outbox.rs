//! The outbox as broker relays on several api nodes see it: claims with a lease, so each
//! event is published by one node at a time and a dead node's claims run out.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ordermill_core::OutboxEvent;
use ordermill_core::ports::{Envelope, Outbox, StoreError};
use sqlx::Row;
use uuid::Uuid;

use super::PostgresStore;
use super::error::from_sqlx;
use super::rows;
use crate::deadline::{Limit, bounded};

/// Claims in one statement (one round trip, atomic by itself):
/// - `claimable`: the oldest rows (UUIDv7 ids sort by time; `outbox_pkey` is walked in order)
///   old enough and not under a live claim. `FOR UPDATE SKIP LOCKED` makes a concurrent
///   claimer pass over the rows this one is taking instead of waiting for them or taking them
///   too; once this statement commits, `claimed_until` keeps them out of later claims.
/// - `claimed`: stamps the lease, in the database's clock (see the migration).
/// - the body: stored for events emitted by consumers; for order.created it is NULL and the
///   order's columns come with it, to rebuild the body with `OutboxEvent::order_created`.
///   Rebuilding rather than storing it keeps the hot path (the group commit) writing each
///   order's data once; the join is one primary-key lookup per claimed event, off that path.
fn claim_sql() -> String {
    format!(
        "WITH claimable AS (
             SELECT event_id FROM outbox
             WHERE written_at <= now() - $2::bigint * interval '1 millisecond'
               AND (claimed_until IS NULL OR claimed_until <= now())
             ORDER BY event_id
             LIMIT $1
             FOR UPDATE SKIP LOCKED
         ),
         claimed AS (
             UPDATE outbox SET claimed_until = now() + $3::bigint * interval '1 millisecond'
             FROM claimable WHERE outbox.event_id = claimable.event_id
             RETURNING outbox.event_id, outbox.routing_key, outbox.payload, outbox.order_id
         )
         SELECT claimed.event_id, claimed.routing_key, claimed.payload, {}
         FROM claimed LEFT JOIN orders ON claimed.payload IS NULL AND orders.id = claimed.order_id
         ORDER BY claimed.event_id",
        rows::ORDER_COLUMNS
    )
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[async_trait]
impl Outbox for PostgresStore {
    async fn claim_unpublished(
        &self,
        limit: usize,
        min_age: Duration,
        lease: Duration,
    ) -> Result<Vec<Envelope>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = bounded!(self, Limit::Query, "an outbox claim", |conn| async {
            sqlx::query(sqlx::AssertSqlSafe(claim_sql()))
                .bind(i64::try_from(limit).unwrap_or(i64::MAX))
                .bind(millis(min_age))
                .bind(millis(lease))
                .fetch_all(conn)
                .await
                .map_err(from_sqlx)
        })?;
        rows.iter()
            .map(|row| {
                let event_id: Uuid = row.try_get(0).map_err(from_sqlx)?;
                let routing_key: String = row.try_get(1).map_err(from_sqlx)?;
                let payload: Option<String> = row.try_get(2).map_err(from_sqlx)?;
                let payload = match payload {
                    Some(payload) => payload,
                    None => {
                        let order_id: Option<Uuid> = row.try_get(3).map_err(from_sqlx)?;
                        if order_id.is_none() {
                            return Err(StoreError::Corrupt(format!(
                                "outbox event {event_id} has no body and its order is missing"
                            )));
                        }
                        let (order, _) = rows::order_state(row, 3)?;
                        OutboxEvent::order_created(&order, event_id).payload
                    }
                };
                Ok(Envelope {
                    event_id,
                    routing_key: Arc::from(routing_key),
                    payload: Arc::from(payload),
                })
            })
            .collect()
    }

    async fn release_claims(&self, events: Vec<Uuid>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        bounded!(self, Limit::Query, "releasing outbox claims", |conn| async {
            sqlx::query("UPDATE outbox SET claimed_until = NULL WHERE event_id = ANY($1::uuid[])")
                .bind(events)
                .execute(conn)
                .await
                .map_err(from_sqlx)
        })?;
        Ok(())
    }

    async fn mark_published(&self, events: Vec<Uuid>) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        // Deleted, not flagged: once the broker has confirmed an event, the broker owns its
        // delivery and consumers deduplicate on the event id; the row would only be read
        // again by a relay that must skip it. Deleting keeps the outbox as small as what is in
        // flight, which is what keeps the claim's walk of `outbox_pkey` and `outbox_len` cheap.
        //
        // Committed without waiting for the WAL flush: a crash that loses the delete only makes
        // the relay publish those events once more, which consumers already absorb. Waiting
        // cost one fsync per published batch, a third of the commits under load. The setting
        // is made local to the statement's own transaction by `set_config(.., true)` in it, so
        // the delete stays one round trip (BEGIN, SET LOCAL, DELETE, COMMIT were four).
        bounded!(self, Limit::Query, "deleting published outbox rows", |conn| async {
            sqlx::query(
                "DELETE FROM outbox USING (SELECT set_config('synchronous_commit', 'off', true)) AS s
                 WHERE event_id = ANY($1::uuid[])",
            )
            .bind(events)
            .execute(conn)
            .await
            .map_err(from_sqlx)
        })?;
        Ok(())
    }
    async fn oldest_unpublished_age(&self) -> Result<Option<Duration>, StoreError> {
        // The first row of `outbox_pkey` (ids are time-ordered), not min(written_at): that
        // would scan the whole outbox, which grows by every order while the broker is down.
        let micros: Option<i64> =
            bounded!(self, Limit::Query, "reading the outbox's oldest event", |conn| async {
                sqlx::query_scalar(
                    "SELECT (extract(epoch FROM now() - written_at) * 1000000)::bigint
                 FROM outbox ORDER BY event_id LIMIT 1",
                )
                .fetch_optional(conn)
                .await
                .map_err(from_sqlx)
            })?;
        Ok(micros.map(|us| Duration::from_micros(us.max(0).unsigned_abs())))
    }
}
