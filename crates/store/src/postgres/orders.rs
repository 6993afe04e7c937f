//! Accepted orders: the group commit and reads by id or idempotency key.

use ordermill_core::ports::{AcceptedOrder, OrderQuery, StoreError};
use ordermill_core::{Order, RoutingKey, units_by_sku};
use sqlx::PgConnection;
use uuid::Uuid;

use super::error::from_sqlx;
use super::limits::limits_counted;
use super::rows;

/// The whole commit as ONE statement, so it is one round trip and atomic by itself (an
/// autocommit statement is its own transaction; no BEGIN/COMMIT round trips). Each table is
/// written once from arrays (`UNNEST`), whatever the batch size:
/// - `new_orders` / `new_events`: every order, and ONE outbox row holding every order's
///   order.created event (0011: the batch is published together);
/// - `locked`: the batch's products, locked in SKU order so two nodes committing batches that
///   share SKUs queue behind each other instead of deadlocking;
/// - `held`: `reserved += q`, once per distinct SKU, only where it stays within `stock`;
/// - the final SELECT fails the statement (and so undoes all of it) when a SKU is unknown, or
///   known but short (→ `Oversold`: the store never holds more than it has, whatever the
///   hot-stock cache said).
///
/// A duplicate idempotency key fails it too, with a unique violation of `idempotency_keys`
/// (→ `Conflict`), and so does a customer going past a SKU's per-customer limit counting
/// their orders through every node (`limited` … `over`, 0006 → `LimitExceeded`).
const COMMIT: &str = concat!(
    "
WITH new_keys AS (
    INSERT INTO idempotency_keys (customer_id, idempotency_key, order_id)
    SELECT k.customer_id, k.key, k.id
    FROM UNNEST($2::text[], $7::text[], $1::uuid[]) AS k(customer_id, key, id)
    WHERE k.key IS NOT NULL
),
new_orders AS (
    INSERT INTO orders (id, customer_id, status, total_minor, items, created_at, idempotency_key)
    SELECT o.id, o.customer_id, o.status, o.total_minor, o.items::json, o.created_at, o.key
    FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[],
                $7::text[])
        AS o(id, customer_id, status, total_minor, items, created_at, key)
),
new_events AS (
    INSERT INTO outbox (event_id, order_id, routing_key, created_at, event_ids, order_ids)
    SELECT ($9::uuid[])[1], NULL::uuid, $8, ($6::bigint[])[1], $9::uuid[], $1::uuid[]
),
locked AS (
    SELECT sku FROM products WHERE sku = ANY($10::text[]) ORDER BY sku FOR UPDATE
),
held AS (
    UPDATE products p SET reserved = p.reserved + h.quantity
    FROM locked JOIN UNNEST($10::text[], $11::bigint[]) AS h(sku, quantity) ON h.sku = locked.sku
    WHERE p.sku = locked.sku AND p.reserved + h.quantity <= p.stock
    RETURNING p.sku
),
",
    limits_counted!(),
    "
SELECT ordermill_require(
    (SELECT count(*) FROM locked) = cardinality($10::text[]),
    'unknown SKU(s): ' || coalesce(
        (SELECT string_agg(s, ', ') FROM unnest($10::text[]) AS s
         WHERE s NOT IN (SELECT sku FROM locked)), '')),
    ordermill_require_stock(
    (SELECT count(*) FROM held) = (SELECT count(*) FROM locked),
    coalesce(
        (SELECT string_agg(sku, ', ') FROM locked WHERE sku NOT IN (SELECT sku FROM held)),
        '')),
    ordermill_require_limit(
    NOT EXISTS (SELECT 1 FROM over),
    coalesce((SELECT string_agg(sku, ', ') FROM over), ''))"
);

/// How `pg_stat_activity` shows a group commit (or a deal join, which begins alike) running:
/// the first characters of [`COMMIT`]'s text.
fn commit_head() -> &'static str {
    &COMMIT[..COMMIT_HEAD_CHARS]
}

/// Enough of [`COMMIT`] to tell it from other statements (ASCII, so a character boundary).
const COMMIT_HEAD_CHARS: usize = 80;

/// Whether a group commit that began before `$1` is still running on another connection.
const COMMIT_STILL_RUNNING: &str = "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
    WHERE state = 'active' AND pid <> pg_backend_pid() AND query_start < $1::timestamptz
      AND left(query, length($2)) = $2)";

/// How often the read-back looks again for a group commit still running.
const STILL_RUNNING_POLL: std::time::Duration = std::time::Duration::from_millis(10);

/// Whether the order `id` is stored, once the group commit that was to store it has ended.
///
/// A group commit cut off by its deadline may still be running on the server: waiting for the
/// batch's product rows, or holding them while it finishes. Waiting for those rows' locks is
/// not enough: when the transaction it waited behind ends, a newcomer's lock on a row can be
/// granted before the woken commit runs (PostgreSQL queues row-lock waiters only while the row
/// is locked), and the read after it would miss a commit that lands a moment later — seen in
/// CI, and reproduced by `postgres_contract::a_read_back_waits_for_a_commit_woken_but_not_yet_run`.
/// So this first waits until no group commit that began before it is still running
/// (`pg_stat_activity`, whose `query` shows the statement to the role that runs it), then, in
/// statements of their own, takes the rows' share locks and reads. What it cannot wait for is a
/// statement that has not reached the server yet (still in the network when its connection was
/// dropped). Bounded by the caller's deadline like any call: the committer then reads again.
pub(crate) async fn stored(
    conn: &mut PgConnection,
    id: Uuid,
    skus: &[&str],
) -> Result<bool, StoreError> {
    let since: String = sqlx::query_scalar("SELECT clock_timestamp()::text")
        .fetch_one(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    loop {
        let running: bool = sqlx::query_scalar(COMMIT_STILL_RUNNING)
            .bind(&since)
            .bind(commit_head())
            .fetch_one(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        if !running {
            break;
        }
        tokio::time::sleep(STILL_RUNNING_POLL).await;
    }
    sqlx::query("SELECT 1 FROM products WHERE sku = ANY($1::text[]) ORDER BY sku FOR SHARE")
        .bind(skus)
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM orders WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(found.is_some())
}

/// Orders as the arrays a statement that inserts them binds first, `$1`–`$7`: ids, customers,
/// statuses, totals, items (JSON text), creation times, idempotency keys ([`COMMIT`], and the
/// joins' statement in `join_group.rs`, whose limit check reads them at the same places).
pub(super) struct OrderArrays<'a> {
    ids: Vec<Uuid>,
    customers: Vec<&'a str>,
    statuses: Vec<&'static str>,
    totals: Vec<i64>,
    items: Vec<String>,
    created: Vec<i64>,
    keys: Vec<Option<&'a str>>,
}

impl<'a> OrderArrays<'a> {
    pub(super) fn of(orders: impl ExactSizeIterator<Item = &'a Order>) -> Self {
        let n = orders.len();
        let mut arrays = OrderArrays {
            ids: Vec::with_capacity(n),
            customers: Vec::with_capacity(n),
            statuses: Vec::with_capacity(n),
            totals: Vec::with_capacity(n),
            items: Vec::with_capacity(n),
            created: Vec::with_capacity(n),
            keys: Vec::with_capacity(n),
        };
        for order in orders {
            arrays.ids.push(order.id.as_uuid());
            arrays.customers.push(order.customer_id.as_str());
            arrays.statuses.push(order.status.as_str());
            arrays.totals.push(order.total.minor());
            arrays.items.push(rows::items_json(&order.lines));
            arrays.created.push(order.created_at.0);
            arrays.keys.push(order.idempotency_key.as_ref().map(|k| k.as_str()));
        }
        arrays
    }

    /// `query` with the arrays bound as its first seven parameters.
    pub(super) fn bind<'q>(self, query: PgQuery<'q>) -> PgQuery<'q>
    where
        'a: 'q,
    {
        query
            .bind(self.ids)
            .bind(self.customers)
            .bind(self.statuses)
            .bind(self.totals)
            .bind(self.items)
            .bind(self.created)
            .bind(self.keys)
    }
}

type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Writes `batch` in one statement: all of it or nothing.
pub(crate) async fn commit(
    conn: &mut PgConnection,
    batch: &[AcceptedOrder],
) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let events: Vec<Uuid> = batch.iter().map(|accepted| accepted.event_id).collect();
    // Summed per SKU: one row update per distinct SKU, however many orders name it.
    let (skus, quantities): (Vec<&str>, Vec<i64>) =
        units_by_sku(batch.iter().map(|a| &a.order)).into_iter().unzip();
    OrderArrays::of(batch.iter().map(|accepted| &accepted.order))
        .bind(sqlx::query(COMMIT))
        .bind(RoutingKey::OrderCreated.as_str())
        .bind(events)
        .bind(skus)
        .bind(quantities)
        .execute(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    Ok(())
}

/// One order by id.
pub(crate) async fn by_id(conn: &mut PgConnection, id: Uuid) -> Result<Option<Order>, StoreError> {
    let sql = format!("SELECT {} FROM orders WHERE id = $1", rows::ORDER_COLUMNS);
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    row.map(|row| rows::order_state(&row, 0).map(|(order, _)| order)).transpose()
}

/// The order `customer` created with this idempotency key (`idempotency_keys_pkey`, then the
/// order by id).
pub(crate) async fn by_idempotency_key(
    conn: &mut PgConnection,
    customer: &str,
    key: &str,
) -> Result<Option<Order>, StoreError> {
    let sql = format!(
        "SELECT {} FROM idempotency_keys k JOIN orders ON orders.id = k.order_id
         WHERE k.customer_id = $1 AND k.idempotency_key = $2",
        rows::ORDER_COLUMNS
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(customer)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    row.map(|row| rows::order_state(&row, 0).map(|(order, _)| order)).transpose()
}

/// The orders these customers created with these keys (`customers[i]` used `keys[i]`): one
/// statement, each pair an `idempotency_keys_pkey` probe, then the order by id.
pub(crate) async fn by_idempotency_keys(
    conn: &mut PgConnection,
    customers: &[&str],
    keys: &[&str],
) -> Result<Vec<Order>, StoreError> {
    let sql = format!(
        "SELECT {} FROM unnest($1::text[], $2::text[]) AS wanted(customer_id, idempotency_key)
         JOIN idempotency_keys k USING (customer_id, idempotency_key)
         JOIN orders ON orders.id = k.order_id",
        rows::ORDER_COLUMNS
    );
    let found = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(customers)
        .bind(keys)
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    found.iter().map(|row| rows::order_state(row, 0).map(|(order, _)| order)).collect()
}

/// Frees an expired idempotency key: its row (found through the order, by primary key) and
/// the order's copy.
pub(crate) async fn forget_key(conn: &mut PgConnection, id: Uuid) -> Result<(), StoreError> {
    sqlx::query(
        "WITH freed AS (
             DELETE FROM idempotency_keys k USING orders o
             WHERE o.id = $1 AND k.customer_id = o.customer_id
               AND k.idempotency_key = o.idempotency_key AND k.order_id = o.id
         )
         UPDATE orders SET idempotency_key = NULL WHERE id = $1",
    )
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    Ok(())
}

/// A page of a customer's orders, newest first (`orders_by_customer`).
pub(crate) async fn of_customer(
    conn: &mut PgConnection,
    customer: &str,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Order>, StoreError> {
    let sql = format!(
        "SELECT {} FROM orders WHERE customer_id = $1 AND ($2::uuid IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3",
        rows::ORDER_COLUMNS
    );
    let found = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(customer)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    found.iter().map(|row| rows::order_state(row, 0).map(|(order, _)| order)).collect()
}

/// Orders an operator looks for: the query's id window, newest first. The id bounds let the
/// planner prune to the partitions of that window and walk their primary keys backwards;
/// neither `status` nor `payment_state` is indexed (an index on a column every consumer
/// updates would make those updates non-HOT).
pub(crate) async fn find(
    conn: &mut PgConnection,
    query: OrderQuery,
) -> Result<Vec<Order>, StoreError> {
    let (condition, value) = crate::decode::filter_condition(query.filter, "$1::text");
    let sql = format!(
        "SELECT {} FROM orders WHERE {condition} AND id >= $2 AND id < $3
         ORDER BY id DESC LIMIT $4",
        rows::ORDER_COLUMNS
    );
    let (low, high) = query.id_range();
    let found = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(value)
        .bind(low)
        .bind(high)
        .bind(i64::from(query.limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    found.iter().map(|row| rows::order_state(row, 0).map(|(order, _)| order)).collect()
}
