//! Consumers' effects: the order state machine run per effect, the results written in ONE
//! transaction per batch with a fixed number of statements whatever the batch size.
//!
//! Same outcomes as the SQLite store (`sqlite/effects.rs`): effects are applied in batch order,
//! each seeing the ones before it (two facts about one order in one batch chain), an effect
//! whose `(consumer, event)` is recorded already is `AlreadyProcessed`, an unknown order is
//! recorded and reported `OrderNotFound`.

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use ordermill_core::ports::{Effect, EffectOutcome, StoreError};
use ordermill_core::{Lifecycle, Order};
use sqlx::{Connection, PgConnection, Row};
use uuid::Uuid;

use super::error::from_sqlx;
use super::rows;
use crate::batch::{self, Loaded, Writes};

/// Records `(consumer, event)` pairs; returns those that were not recorded before. Pairs are
/// sent sorted so two batches sharing pairs lock them in the same order (no deadlock).
const RECORD_PROCESSED: &str = "
INSERT INTO processed_events (consumer, event_id)
SELECT * FROM UNNEST($1::text[], $2::uuid[])
ON CONFLICT DO NOTHING
RETURNING consumer, event_id";

/// Every write of a batch as one statement (empty arrays write nothing). Products are locked
/// in SKU order, as commits lock them, so the two never deadlock; orders were locked (by id)
/// when they were read.
const WRITE: &str = "
WITH changed_orders AS (
    UPDATE orders o SET status = c.status, stock_state = c.stock_state,
        payment_state = c.payment_state, history = c.history::json, pay_by = c.pay_by,
        payment_url = c.payment_url
    FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $23::bigint[],
                $24::text[])
        AS c(id, status, stock_state, payment_state, history, pay_by, payment_url)
    -- The batch's id range lets the planner touch only the partitions it spans (a join
    -- alone would probe the primary key of every partition for each row).
    WHERE o.id = c.id AND o.id BETWEEN $18 AND $19
),
-- An order's first payment outcome is a plain insert: `ON CONFLICT` would insert it
-- speculatively (a conflict probe, a lock, a confirm record in the WAL) for a row that
-- cannot be there yet. A later outcome (money after an expiry or a decline:
-- refund_required) replaces the row.
new_payments AS (
    INSERT INTO payments (order_id, status, event_id, at)
    SELECT p.order_id, p.status, p.event_id, p.at
    FROM UNNEST($6::uuid[], $7::text[], $8::uuid[], $9::bigint[], $28::bool[])
        AS p(order_id, status, event_id, at, new_row)
    WHERE p.new_row
),
changed_payments AS (
    INSERT INTO payments (order_id, status, event_id, at)
    SELECT p.order_id, p.status, p.event_id, p.at
    FROM UNNEST($6::uuid[], $7::text[], $8::uuid[], $9::bigint[], $28::bool[])
        AS p(order_id, status, event_id, at, new_row)
    WHERE NOT p.new_row
    ON CONFLICT (order_id) DO UPDATE
        SET status = excluded.status, event_id = excluded.event_id, at = excluded.at
),
-- The batch's emitted events as ONE outbox row (0011): they are published together.
new_events AS (
    INSERT INTO outbox (event_id, order_id, routing_key, created_at,
                        event_ids, order_ids, routing_keys, payloads)
    SELECT ($10::uuid[])[1], NULL::uuid, ($12::text[])[1], ($14::bigint[])[1],
           $10::uuid[], $11::uuid[], $12::text[], $13::text[]
    WHERE cardinality($10::uuid[]) > 0
),
locked AS (
    SELECT sku FROM products WHERE sku = ANY($15::text[]) ORDER BY sku FOR UPDATE
),
moved AS (
    UPDATE products p SET stock = p.stock + d.stock, reserved = p.reserved + d.reserved
    FROM locked JOIN UNNEST($15::text[], $16::bigint[], $17::bigint[]) AS d(sku, stock, reserved)
        ON d.sku = locked.sku
    WHERE p.sku = locked.sku
),
-- A cancelled order's units no longer count against its customer's limits (0006; SKUs
-- without a limit have no row to change).
uncounted AS (
    UPDATE customer_units c SET units = greatest(0, c.units - d.units)
    FROM (SELECT sku, customer_id, sum(units) AS units
          FROM UNNEST($20::text[], $21::text[], $22::bigint[]) AS u(sku, customer_id, units)
          GROUP BY 1, 2) AS d
    WHERE c.sku = d.sku AND c.customer_id = d.customer_id
),
-- Deadlines of orders that started awaiting payment, and of those that stopped (0007).
deadlines_set AS (
    INSERT INTO payment_deadlines (order_id, pay_by)
    SELECT * FROM UNNEST($25::uuid[], $26::bigint[])
    ON CONFLICT DO NOTHING
),
deadlines_done AS (
    DELETE FROM payment_deadlines WHERE order_id = ANY($27::uuid[])
)
SELECT 1";

/// Units given back here and owed to the hot-stock cache until the node gives them back there
/// (0010): a node killed in between leaves the note, and an overdue note ends in a rebuild of
/// the counts. A statement of its own, sent only by batches that give units back (those with
/// cancellations): as a part of [`WRITE`] it would open the table and its index in every
/// effect batch.
const NOTE_RETURNS: &str = "
INSERT INTO stock_returns (order_id) SELECT * FROM UNNEST($1::uuid[]) ON CONFLICT DO NOTHING";

/// Writes `orders`' new states (status, stock and payment states, history) and everything in
/// `writes` with ONE statement ([`WRITE`]), on the caller's transaction. The caller has locked
/// the orders already.
pub(crate) async fn write(
    conn: &mut PgConnection,
    orders: &[(&Order, Lifecycle)],
    writes: Writes,
) -> Result<(), StoreError> {
    if orders.is_empty() && writes.is_empty() {
        return Ok(());
    }
    let mut writes = writes;
    let returns = std::mem::take(&mut writes.returns);
    let (skus, stock, reserved) = writes.stock_columns();
    let ids: Vec<Uuid> = orders.iter().map(|(o, _)| o.id.as_uuid()).collect();
    let (uncounted_skus, uncounted_customers, uncounted_units) = writes.uncounted_columns();
    let (deadline_orders, deadline_times): (Vec<Uuid>, Vec<i64>) =
        writes.deadlines_set.into_iter().unzip();
    let (first, last) = rows::id_range(&ids);
    sqlx::query(WRITE)
        .bind(ids)
        .bind(orders.iter().map(|(_, s)| s.status.as_str()).collect::<Vec<_>>())
        .bind(orders.iter().map(|(_, s)| s.stock.as_str()).collect::<Vec<_>>())
        .bind(orders.iter().map(|(_, s)| s.payment.as_str()).collect::<Vec<_>>())
        .bind(orders.iter().map(|(o, _)| rows::history_json(&o.history)).collect::<Vec<_>>())
        .bind(writes.payment_orders)
        .bind(writes.payment_statuses)
        .bind(writes.payment_events)
        .bind(writes.payment_at)
        .bind(writes.event_ids)
        .bind(writes.event_orders)
        .bind(writes.event_keys)
        .bind(writes.event_payloads)
        .bind(writes.event_at)
        .bind(skus)
        .bind(stock)
        .bind(reserved)
        .bind(first)
        .bind(last)
        .bind(uncounted_skus)
        .bind(uncounted_customers)
        .bind(uncounted_units)
        .bind(
            orders
                .iter()
                .map(|(o, _)| o.awaited_payment.as_ref().map(|a| a.pay_by.0))
                .collect::<Vec<_>>(),
        )
        .bind(
            orders
                .iter()
                .map(|(o, _)| o.awaited_payment.as_ref().map(|a| a.payment_url.clone()))
                .collect::<Vec<_>>(),
        )
        .bind(deadline_orders)
        .bind(deadline_times)
        .bind(writes.deadlines_done)
        .bind(writes.payment_new)
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    if !returns.is_empty() {
        sqlx::query(NOTE_RETURNS).bind(returns).execute(conn).await.map_err(from_sqlx)?;
    }
    Ok(())
}

/// How a batch's `(consumer, event)` pairs are recorded ([`batch::checked`] says which).
///
/// Unchecked, the records need no speculative insertion, no `HEAP_CONFIRM` WAL record per row
/// and no anti-join over a `RETURNING` list (PostgreSQL's CPU per order −15%,
/// docs/BENCHMARKS.md); a repeat fails them on the primary key, a `Conflict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Records {
    /// A plain `INSERT`: every pair new, or a `Conflict`.
    Fresh,
    /// `INSERT … ON CONFLICT DO NOTHING RETURNING`: the pairs recorded before are reported.
    Checked,
}

/// The plain records of [`Records::Fresh`] (pairs sorted, as for [`RECORD_PROCESSED`]).
const RECORD_FRESH: &str = "
INSERT INTO processed_events (consumer, event_id)
SELECT * FROM UNNEST($1::text[], $2::uuid[])";

/// The orders an effect of the batch may change, locked, and which `(consumer, event)` pairs
/// were recorded before this batch — in ONE statement (the records inserted first, then the
/// orders locked in id order, as every writer of orders locks them). Every row carries the
/// pairs recorded before (as arrays, NULL when there are none: a first delivery, and always
/// with [`Records::Fresh`]); with no order to lock there is one row of NULL order columns.
fn record_and_lock_sql(records: Records) -> String {
    let recorded = match records {
        // `seen` reads `fresh`, so the records are inserted before the orders are locked.
        Records::Fresh => format!(
            "fresh AS ({RECORD_FRESH} RETURNING 1 AS one),
             seen AS (SELECT NULL::text[] AS consumers, NULL::uuid[] AS events
                      FROM (SELECT count(*) FROM fresh) AS inserted)"
        ),
        Records::Checked => format!(
            "fresh AS ({RECORD_PROCESSED}),
             seen AS (
                 SELECT array_agg(u.consumer) AS consumers, array_agg(u.event_id) AS events
                 FROM UNNEST($1::text[], $2::uuid[]) AS u(consumer, event_id)
                 WHERE NOT EXISTS (
                     SELECT 1 FROM fresh
                     WHERE fresh.consumer = u.consumer AND fresh.event_id = u.event_id)
             )"
        ),
    };
    format!(
        "WITH {recorded},
         -- The ids' range prunes the partitions the batch does not span when the executor
         -- starts: otherwise every partition's index is scanned for the whole array, and
         -- again for each row a concurrent effect changed meanwhile (the `FOR UPDATE`
         -- recheck rescans them all, sorting the array each time).
         locked AS (
             SELECT {} FROM orders WHERE id = ANY($3::uuid[]) AND id BETWEEN $4 AND $5
             ORDER BY id FOR UPDATE
         )
         SELECT seen.consumers, seen.events, locked.* FROM seen LEFT JOIN locked ON true",
        rows::ORDER_COLUMNS
    )
}

static FRESH_AND_LOCK: LazyLock<String> = LazyLock::new(|| record_and_lock_sql(Records::Fresh));
static CHECKED_AND_LOCK: LazyLock<String> = LazyLock::new(|| record_and_lock_sql(Records::Checked));

/// Applies `effects` atomically: all of them or none.
pub(crate) async fn apply(
    conn: &mut PgConnection,
    effects: &[Effect],
) -> Result<Vec<EffectOutcome>, StoreError> {
    if effects.is_empty() {
        return Ok(Vec::new());
    }
    let (pairs, first) = batch::pairs(effects);
    // Every order an effect could change if it applies (a redelivered effect that turns out
    // recorded already leaves its order locked and unchanged: rare, and harmless).
    let order_ids = batch::orders_to_lock(effects, &first);
    let records = if batch::checked(effects) { Records::Checked } else { Records::Fresh };
    let batch = Batch { effects, pairs: &pairs, first: &first, order_ids: &order_ids };
    match apply_as(&mut *conn, &batch, records).await {
        // A failed transaction was rolled back when it was dropped.
        // PostgreSQL's log shows the failed try as a duplicate key error on processed_events.
        Err(StoreError::Conflict(_)) if records == Records::Fresh => {
            batch::unforeseen_repeat(effects);
            apply_as(conn, &batch, Records::Checked).await
        }
        done => done,
    }
}

/// [`apply_recording`], or [`record_only`] for a batch with no order to change.
async fn apply_as(
    conn: &mut PgConnection,
    batch: &Batch<'_>,
    records: Records,
) -> Result<Vec<EffectOutcome>, StoreError> {
    if batch.order_ids.is_empty() {
        record_only(conn, batch, records).await
    } else {
        apply_recording(conn, batch, records).await
    }
}

/// A batch of effects with what [`apply`] computed from it once.
struct Batch<'a> {
    effects: &'a [Effect],
    pairs: &'a [(&'a str, Uuid)],
    first: &'a [bool],
    order_ids: &'a [Uuid],
}

/// One transaction applying `batch`, its records written as `records` says.
async fn apply_recording(
    conn: &mut PgConnection,
    batch: &Batch<'_>,
    records: Records,
) -> Result<Vec<EffectOutcome>, StoreError> {
    let (consumers, events): (Vec<&str>, Vec<Uuid>) = batch.pairs.iter().copied().unzip();
    let (first_id, last_id) = rows::id_range(batch.order_ids);
    let sql = match records {
        Records::Fresh => &FRESH_AND_LOCK,
        Records::Checked => &CHECKED_AND_LOCK,
    };

    let mut tx = conn.begin().await.map_err(from_sqlx)?;
    let found = sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
        .bind(consumers)
        .bind(events)
        .bind(batch.order_ids)
        .bind(first_id)
        .bind(last_id)
        .fetch_all(&mut *tx)
        .await
        .map_err(from_sqlx)?;
    let mut seen: HashSet<(String, Uuid)> = HashSet::new();
    let mut orders: HashMap<Uuid, Loaded> = HashMap::with_capacity(found.len());
    for (i, row) in found.iter().enumerate() {
        if i == 0 {
            let consumers: Option<Vec<String>> = row.try_get(0).map_err(from_sqlx)?;
            let events: Option<Vec<Uuid>> = row.try_get(1).map_err(from_sqlx)?;
            seen.extend(consumers.unwrap_or_default().into_iter().zip(events.unwrap_or_default()));
        }
        let id: Option<Uuid> = row.try_get(2).map_err(from_sqlx)?;
        if id.is_some() {
            let (order, state) = rows::order_state(row, 2)?;
            orders.insert(order.id.as_uuid(), Loaded::new(order, state));
        }
    }
    let fresh: HashSet<(String, Uuid)> = batch
        .pairs
        .iter()
        .map(|&(consumer, event)| (consumer.to_owned(), event))
        .filter(|pair| !seen.contains(pair))
        .collect();
    let applies = batch::applies(batch.effects, batch.first, &fresh);

    let mut writes = Writes::default();
    let outcomes = batch::run(batch.effects, &applies, &mut orders, &mut writes);
    if records == Records::Checked {
        // Checked assumes nothing of the rows there: a payment row that an order's state says
        // is missing (its plain insert failed the first try) is replaced, not inserted.
        writes.payment_new.fill(false);
    }
    let dirty: Vec<(&Order, Lifecycle)> =
        orders.values().filter(|l| l.dirty).map(|l| (&l.order, l.state)).collect();
    write(&mut tx, &dirty, writes).await?;
    tx.commit().await.map_err(from_sqlx)?;
    Ok(outcomes)
}

/// A batch whose effects carry no fact (notify's): only the records, one autocommitted
/// statement (no BEGIN/COMMIT round trips).
async fn record_only(
    conn: &mut PgConnection,
    batch: &Batch<'_>,
    records: Records,
) -> Result<Vec<EffectOutcome>, StoreError> {
    let Batch { effects, pairs, first, .. } = *batch;
    let (consumers, events): (Vec<&str>, Vec<Uuid>) = pairs.iter().copied().unzip();
    let fresh: HashSet<(String, Uuid)> = match records {
        Records::Fresh => {
            sqlx::query(RECORD_FRESH)
                .bind(consumers)
                .bind(events)
                .execute(&mut *conn)
                .await
                .map_err(from_sqlx)?;
            pairs.iter().map(|&(consumer, event)| (consumer.to_owned(), event)).collect()
        }
        Records::Checked => sqlx::query(RECORD_PROCESSED)
            .bind(consumers)
            .bind(events)
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?
            .iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(from_sqlx)?,
    };
    let applies = batch::applies(effects, first, &fresh);
    let mut writes = Writes::default();
    let outcomes = batch::run(effects, &applies, &mut HashMap::new(), &mut writes);
    if !writes.is_empty() {
        return Err(StoreError::Corrupt(
            "an effect without a fact asked for writes; this is a bug".to_owned(),
        ));
    }
    Ok(outcomes)
}
