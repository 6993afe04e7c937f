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
/// - `candidates`: the oldest rows (UUIDv7 ids sort by time; `outbox_pkey` is walked in order)
///   old enough and not under a live claim. `FOR UPDATE SKIP LOCKED` makes a concurrent
///   claimer pass over the rows this one is taking instead of waiting for them or taking them
///   too; once this statement commits, `claimed_until` keeps them out of later claims.
/// - `claimable`: of those, rows in order until `$1` events are reached. A row holding a
///   transaction's events (0011) is taken whole, so a claim may hold a few more than asked;
///   the first row always goes, however many events it holds.
/// - `claimed`: stamps the lease, in the database's clock (see the migration).
/// - `events`: a single row as it is; a batch row unnested, in the order it was written.
/// - the body: stored for events emitted by consumers; for order.created it is NULL and the
///   order's columns come with it, to rebuild the body with `OutboxEvent::order_created`.
///   Rebuilding rather than storing it keeps the hot path (the group commit) writing each
///   order's data once; the join is one primary-key lookup per claimed event, off that path.
fn claim_sql() -> String {
    format!(
        "WITH candidates AS MATERIALIZED (
             SELECT event_id, coalesce(cardinality(event_ids), 1) AS size FROM outbox
             WHERE written_at <= now() - $2::bigint * interval '1 millisecond'
               AND (claimed_until IS NULL OR claimed_until <= now())
             ORDER BY event_id
             LIMIT $1
             FOR UPDATE SKIP LOCKED
         ),
         claimable AS (
             SELECT event_id FROM (
                 SELECT event_id, sum(size) OVER (ORDER BY event_id) - size AS before
                 FROM candidates
             ) AS c
             WHERE before < $1
         ),
         claimed AS (
             UPDATE outbox SET claimed_until = now() + $3::bigint * interval '1 millisecond'
             FROM claimable WHERE outbox.event_id = claimable.event_id
             RETURNING outbox.event_id, outbox.routing_key, outbox.payload, outbox.order_id,
                       outbox.event_ids, outbox.order_ids, outbox.routing_keys, outbox.payloads
         ),
         events AS (
             SELECT claimed.event_id AS row_id, 1::bigint AS n, claimed.event_id,
                    claimed.routing_key, claimed.payload, claimed.order_id
             FROM claimed WHERE claimed.event_ids IS NULL
             UNION ALL
             SELECT claimed.event_id, e.n, e.event_id,
                    coalesce(e.routing_key, claimed.routing_key), e.payload, e.order_id
             FROM claimed,
                  unnest(claimed.event_ids, claimed.order_ids, claimed.routing_keys,
                         claimed.payloads) WITH ORDINALITY AS e(event_id, order_id, routing_key,
                                                                payload, n)
             WHERE claimed.event_ids IS NOT NULL
         )
         SELECT events.event_id, events.routing_key, events.payload, {}
         FROM events LEFT JOIN orders ON events.payload IS NULL AND orders.id = events.order_id
         ORDER BY events.row_id, events.n",
        rows::ORDER_COLUMNS
    )
}

/// Deletes the rows every one of whose events is in `$1`: a single row by its key, a batch
/// row by its key (its first event) once all its events are there. Returns how many events
/// went. Committed without waiting for the WAL flush (see [`Outbox::mark_published`] below).
const DELETE_PUBLISHED: &str = "
WITH gone AS (
    DELETE FROM outbox USING (SELECT set_config('synchronous_commit', 'off', true)) AS s
    WHERE event_id = ANY($1::uuid[]) AND (event_ids IS NULL OR event_ids <@ $1::uuid[])
    RETURNING coalesce(cardinality(event_ids), 1) AS events
)
SELECT coalesce(sum(events), 0)::bigint FROM gone";

/// Takes the events in `$1` out of every batch row that holds some of them (`hit`): a row left
/// with none is deleted, the others keep the rest in their order, keyed by the first of them.
/// A scan of the outbox (no index on the arrays): it runs only when [`DELETE_PUBLISHED`] left
/// marked events behind, which no publisher does today (each marks whole rows), or when the
/// events were gone already (published twice) or listed twice.
const TRIM_PUBLISHED: &str = "
WITH hit AS (
    SELECT event_id, event_ids, order_ids, routing_keys, payloads FROM outbox
    WHERE event_ids && $1::uuid[] FOR UPDATE
),
kept AS (
    SELECT hit.event_id AS row_id,
           array_agg(e.event_id ORDER BY e.n) AS ids,
           array_agg(e.order_id ORDER BY e.n) AS orders,
           array_agg(e.routing_key ORDER BY e.n) AS keys,
           array_agg(e.payload ORDER BY e.n) AS bodies
    FROM hit,
         unnest(hit.event_ids, hit.order_ids, hit.routing_keys, hit.payloads)
             WITH ORDINALITY AS e(event_id, order_id, routing_key, payload, n)
    WHERE e.event_id <> ALL($1::uuid[])
    GROUP BY hit.event_id
),
emptied AS (
    DELETE FROM outbox
    WHERE event_id IN (SELECT event_id FROM hit) AND event_id NOT IN (SELECT row_id FROM kept)
)
UPDATE outbox o SET
    event_id = kept.ids[1],
    routing_key = coalesce(kept.keys[1], o.routing_key),
    event_ids = kept.ids,
    order_ids = kept.orders,
    routing_keys = CASE WHEN o.routing_keys IS NULL THEN NULL ELSE kept.keys END,
    payloads = CASE WHEN o.payloads IS NULL THEN NULL ELSE kept.bodies END
FROM kept WHERE o.event_id = kept.row_id";

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
        let deleted: i64 =
            bounded!(self, Limit::Query, "deleting published outbox rows", |conn| async {
                sqlx::query_scalar(DELETE_PUBLISHED)
                    .bind(&events)
                    .fetch_one(conn)
                    .await
                    .map_err(from_sqlx)
            })?;
        if usize::try_from(deleted).is_ok_and(|deleted| deleted >= events.len()) {
            return Ok(());
        }
        bounded!(self, Limit::Query, "deleting published events from outbox rows", |conn| async {
            sqlx::query(TRIM_PUBLISHED).bind(&events).execute(conn).await.map_err(from_sqlx)
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
