//! Accepted orders: the group commit and reads by id, idempotency key or customer.

use std::collections::{BTreeMap, HashMap};

use ordermill_core::ports::{AcceptedOrder, OrderQuery, StoreError};
use ordermill_core::{CustomerId, IdempotencyKey, Order, RoutingKey, units_by_sku};
use sqlx::{MySql, MySqlConnection, QueryBuilder, Row};
use uuid::Uuid;

use super::error::{TxError, from_sqlx};
use super::rows;
use super::shape;
use super::tx::transaction;

/// Writes `batch` in one transaction: all of it or nothing. The order of the steps keeps the
/// products' row locks — the ones every node's commits and every inventory batch queue on —
/// for as short a time as possible: one statement and the COMMIT.
/// 1. idempotency keys, orders and their order.created outbox rows, one multi-row INSERT each
///    (new rows: they wait for nobody; a reused key fails with a duplicate → `Conflict`);
/// 2. `reserved += q` for every SKU in ONE conditional UPDATE that only raises a row where it
///    stays within `stock` (the rows are locked by it, in the order of the derived table: SKU
///    order). Fewer rows changed than SKUs named means an unknown SKU or a short one
///    (→ `Oversold`); which, is read after rolling back to a savepoint, and the batch fails;
/// 3. per-customer limits: the limited SKUs' `customer_units` rows of the batch's customers
///    are locked in key order (after products, as a cancellation takes them), and a customer
///    going past a limit (→ `LimitExceeded`) fails the batch; otherwise the counts are added.
pub(crate) async fn commit(
    conn: &mut MySqlConnection,
    batch: &[AcceptedOrder],
) -> Result<(), StoreError> {
    if batch.is_empty() {
        return Ok(());
    }
    let wanted = units_by_sku(batch.iter().map(|a| &a.order));
    transaction!(conn, |tx| commit_in(&mut tx, batch, &wanted))
}

/// Whether the order `id` is stored, once no commit holding `skus`' product rows is running: a
/// group commit locks its products and keeps them until its commit has ended, so the share
/// locks (one statement of their own, in SKU order as everywhere, released when it ends)
/// wait out a commit that outlived its caller's deadline.
pub(crate) async fn stored(
    conn: &mut MySqlConnection,
    id: Uuid,
    skus: &[&str],
) -> Result<bool, StoreError> {
    for chunk in shape::padded(skus) {
        let mut query = QueryBuilder::<MySql>::new("SELECT 1 FROM products WHERE sku IN (");
        let mut list = query.separated(", ");
        for sku in chunk {
            list.push_bind(sku.to_owned());
        }
        query.push(") ORDER BY sku LOCK IN SHARE MODE");
        query.build().execute(&mut *conn).await.map_err(from_sqlx)?;
    }
    Ok(by_id(conn, id).await?.is_some())
}

async fn commit_in(
    conn: &mut MySqlConnection,
    batch: &[AcceptedOrder],
    wanted: &BTreeMap<&str, i64>,
) -> Result<(), TxError> {
    let limits = limits_of(conn, wanted.keys().copied()).await?;
    let orders: Vec<&Order> = batch.iter().map(|a| &a.order).collect();
    insert_orders(conn, &orders).await?;
    insert_created_events(conn, batch).await?;
    hold(conn, wanted).await?;
    count_limited(conn, &orders, &limits).await?;
    Ok(())
}

/// Step 2: raises `reserved` where it fits, or names what does not.
async fn hold(conn: &mut MySqlConnection, wanted: &BTreeMap<&str, i64>) -> Result<(), TxError> {
    sqlx::raw_sql("SAVEPOINT hold").execute(&mut *conn).await?;
    let mut raised = 0;
    let rows: Vec<(&str, i64)> = wanted.iter().map(|(sku, q)| (*sku, *q)).collect();
    for list in shape::padded(&rows) {
        let mut query = QueryBuilder::<MySql>::new("UPDATE products p JOIN (");
        for (i, (sku, quantity)) in list.iter().enumerate() {
            query.push(if i == 0 { "SELECT " } else { " UNION ALL SELECT " });
            query.push_bind(*sku).push(" AS sku, ").push_bind(*quantity).push(" AS quantity");
        }
        query.push(
            ") h ON p.sku = h.sku SET p.reserved = p.reserved + h.quantity \
             WHERE p.reserved + h.quantity <= p.stock",
        );
        raised += query.build().execute(&mut *conn).await?.rows_affected();
    }
    if raised == wanted.len() as u64 {
        return Ok(());
    }
    // The rare path: undo the raises and say which SKUs refused.
    sqlx::raw_sql("ROLLBACK TO SAVEPOINT hold").execute(&mut *conn).await?;
    let mut query =
        QueryBuilder::<MySql>::new("SELECT sku, stock, reserved FROM products WHERE sku IN (");
    let mut list = query.separated(", ");
    for sku in wanted.keys() {
        list.push_bind(*sku);
    }
    query.push(")");
    let found: HashMap<String, (i64, i64)> = query
        .build()
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|row| Ok((row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?))))
        .collect::<Result<_, sqlx::Error>>()?;
    let unknown: Vec<&str> =
        wanted.keys().copied().filter(|sku| !found.contains_key(*sku)).collect();
    if !unknown.is_empty() {
        return Err(
            StoreError::Backend(format!("unknown SKU(s): {}", unknown.join(", ")).into()).into()
        );
    }
    let short: Vec<&str> = wanted
        .iter()
        .filter(|(sku, q)| found.get(**sku).is_some_and(|(stock, reserved)| reserved + *q > *stock))
        .map(|(sku, _)| *sku)
        .collect();
    Err(StoreError::Oversold(if short.is_empty() {
        // Not short now: another commit released units between the UPDATE and this read.
        // Refused all the same (this batch holds nothing); its requests are committed again
        // one by one by the committer.
        wanted.keys().copied().collect::<Vec<_>>().join(", ")
    } else {
        short.join(", ")
    })
    .into())
}

/// The per-customer limits of `skus` (read before any lock is taken: limits change rarely, and
/// a limit set meanwhile recounts under the product lock, see `limits.rs`).
pub(crate) async fn limits_of(
    conn: &mut MySqlConnection,
    skus: impl Iterator<Item = &str>,
) -> Result<HashMap<String, i64>, TxError> {
    let skus: Vec<&str> = skus.collect();
    let mut limits = HashMap::new();
    for list in shape::padded(&skus) {
        let mut query = QueryBuilder::<MySql>::new(
            "SELECT sku, per_customer_limit FROM purchase_limits WHERE sku IN (",
        );
        let mut separated = query.separated(", ");
        for sku in list {
            separated.push_bind(sku);
        }
        query.push(")");
        for row in query.build().fetch_all(&mut *conn).await? {
            limits.insert(row.try_get(0)?, row.try_get(1)?);
        }
    }
    Ok(limits)
}

/// Step 3: per-customer limits, counted through every node (`customer_units`). Shared with
/// deal joins.
pub(crate) async fn count_limited(
    conn: &mut MySqlConnection,
    orders: &[&Order],
    limits: &HashMap<String, i64>,
) -> Result<(), TxError> {
    if limits.is_empty() {
        return Ok(());
    }
    // Units per (sku, customer) of the limited SKUs, in key order (the order rows are locked).
    let mut units: BTreeMap<(&str, &str), i64> = BTreeMap::new();
    for order in orders {
        for line in order.lines.iter().filter(|l| limits.contains_key(l.sku.as_str())) {
            *units.entry((line.sku.as_str(), order.customer_id.as_str())).or_default() +=
                i64::from(line.quantity.get());
        }
    }
    add_units(conn, &units, limits).await
}

/// Adds `units` to `customer_units` (rows locked in key order), refusing with `LimitExceeded`
/// when a count would pass its SKU's limit.
async fn add_units(
    conn: &mut MySqlConnection,
    units: &BTreeMap<(&str, &str), i64>,
    limits: &HashMap<String, i64>,
) -> Result<(), TxError> {
    if units.is_empty() {
        return Ok(());
    }
    let mut held: HashMap<(String, String), i64> = HashMap::new();
    let keys: Vec<&(&str, &str)> = units.keys().collect();
    for chunk in shape::padded(&keys) {
        let mut query = QueryBuilder::<MySql>::new(
            "SELECT sku, customer_id, units FROM customer_units WHERE (sku, customer_id) IN (",
        );
        let mut list = query.separated(", ");
        for (sku, customer) in chunk {
            list.push("(").push_bind_unseparated(*sku).push_unseparated(", ");
            list.push_bind_unseparated(*customer).push_unseparated(")");
        }
        query.push(") ORDER BY sku, customer_id FOR UPDATE");
        for row in query.build().fetch_all(&mut *conn).await? {
            held.insert((row.try_get(0)?, row.try_get(1)?), row.try_get(2)?);
        }
    }
    let mut over: Vec<&str> = units
        .iter()
        .filter(|((sku, customer), add)| {
            let now = held.get(&((*sku).to_owned(), (*customer).to_owned())).copied().unwrap_or(0);
            limits.get(*sku).is_some_and(|limit| now + **add > *limit)
        })
        .map(|((sku, _), _)| *sku)
        .collect();
    over.dedup();
    if !over.is_empty() {
        return Err(StoreError::LimitExceeded(over.join(", ")).into());
    }
    let rows: Vec<_> = units.iter().collect();
    for chunk in shape::chunks(&rows) {
        let mut query =
            QueryBuilder::<MySql>::new("INSERT INTO customer_units (sku, customer_id, units) ");
        query.push_values(chunk, |mut row, ((sku, customer), units)| {
            row.push_bind(*sku).push_bind(*customer).push_bind(**units);
        });
        query.push(" ON DUPLICATE KEY UPDATE units = units + VALUES(units)");
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Step 1: keys and orders (shared with deal joins); a reused key fails with a duplicate.
pub(crate) async fn insert_orders(
    conn: &mut MySqlConnection,
    orders: &[&Order],
) -> Result<(), TxError> {
    let keyed: Vec<&&Order> = orders.iter().filter(|o| o.idempotency_key.is_some()).collect();
    for chunk in shape::chunks(&keyed) {
        let mut query = QueryBuilder::<MySql>::new(
            "INSERT INTO idempotency_keys (customer_id, idempotency_key, order_id) ",
        );
        query.push_values(chunk, |mut row, order| {
            row.push_bind(order.customer_id.as_str())
                .push_bind(order.idempotency_key.as_ref().map(|k| k.as_str()))
                .push_bind(order.id.as_uuid());
        });
        query.build().execute(&mut *conn).await?;
    }
    for chunk in shape::chunks(orders) {
        let mut query = QueryBuilder::<MySql>::new(
            "INSERT INTO orders (id, customer_id, status, total_minor, items, created_at, \
             idempotency_key, history) ",
        );
        query.push_values(chunk, |mut row, order| {
            row.push_bind(order.id.as_uuid())
                .push_bind(order.customer_id.as_str())
                .push_bind(order.status.as_str())
                .push_bind(order.total.minor())
                .push_bind(rows::items_json(&order.lines))
                .push_bind(order.created_at.0)
                .push_bind(order.idempotency_key.as_ref().map(|k| k.as_str()))
                .push_bind(rows::history_json(&order.history));
        });
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Step 1, continued: the orders' `order.created` outbox rows.
async fn insert_created_events(
    conn: &mut MySqlConnection,
    batch: &[AcceptedOrder],
) -> Result<(), TxError> {
    for chunk in shape::chunks(batch) {
        let mut query = QueryBuilder::<MySql>::new(
            "INSERT INTO outbox (event_id, order_id, routing_key, created_at) ",
        );
        query.push_values(chunk, |mut row, AcceptedOrder { order, event_id }| {
            row.push_bind(*event_id)
                .push_bind(order.id.as_uuid())
                .push_bind(RoutingKey::OrderCreated.as_str())
                .push_bind(order.created_at.0);
        });
        query.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// One order by id.
pub(crate) async fn by_id(
    conn: &mut MySqlConnection,
    id: Uuid,
) -> Result<Option<Order>, StoreError> {
    let sql = format!("SELECT {} FROM orders WHERE id = ?", rows::ORDER_COLUMNS);
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    row.map(|row| rows::order_state(&row, 0).map(|(order, _)| order)).transpose()
}

/// The order `customer` created with this idempotency key.
pub(crate) async fn by_idempotency_key(
    conn: &mut MySqlConnection,
    customer: &str,
    key: &str,
) -> Result<Option<Order>, StoreError> {
    let sql = format!(
        "SELECT {} FROM idempotency_keys k JOIN orders ON orders.id = k.order_id
         WHERE k.customer_id = ? AND k.idempotency_key = ?",
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

/// The orders these customers created with these keys: one statement, each pair a probe of
/// `idempotency_keys`' primary key (a row-constructor `IN` list), then the order by id.
pub(crate) async fn by_idempotency_keys(
    conn: &mut MySqlConnection,
    keys: &[(CustomerId, IdempotencyKey)],
) -> Result<Vec<Order>, StoreError> {
    let pairs = vec!["(?, ?)"; keys.len()].join(", ");
    let sql = format!(
        "SELECT {} FROM idempotency_keys k JOIN orders ON orders.id = k.order_id
         WHERE (k.customer_id, k.idempotency_key) IN ({pairs})",
        rows::ORDER_COLUMNS
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (customer, key) in keys {
        query = query.bind(customer.as_str()).bind(key.as_str());
    }
    let found = query.fetch_all(&mut *conn).await.map_err(from_sqlx)?;
    found.iter().map(|row| rows::order_state(row, 0).map(|(order, _)| order)).collect()
}

/// Frees an expired idempotency key: its row and the order's copy, together.
pub(crate) async fn forget_key(conn: &mut MySqlConnection, id: Uuid) -> Result<(), StoreError> {
    transaction!(conn, |tx| async {
        sqlx::query(
            "DELETE k FROM idempotency_keys k JOIN orders o
               ON k.customer_id = o.customer_id AND k.idempotency_key = o.idempotency_key
              AND k.order_id = o.id
             WHERE o.id = ?",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE orders SET idempotency_key = NULL WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        Ok::<(), TxError>(())
    })
}

/// A page of a customer's orders, newest first (`orders_by_customer`).
pub(crate) async fn of_customer(
    conn: &mut MySqlConnection,
    customer: &str,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<Order>, StoreError> {
    let sql = format!(
        "SELECT {} FROM orders WHERE customer_id = ? AND (? IS NULL OR id < ?)
         ORDER BY id DESC LIMIT ?",
        rows::ORDER_COLUMNS
    );
    let found = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(customer)
        .bind(before)
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    found.iter().map(|row| rows::order_state(row, 0).map(|(order, _)| order)).collect()
}

/// Orders an operator looks for: the query's id window (a primary-key range, pruned to the
/// partitions it covers), newest first.
pub(crate) async fn find(
    conn: &mut MySqlConnection,
    query: OrderQuery,
) -> Result<Vec<Order>, StoreError> {
    let (condition, value) = crate::decode::filter_condition(query.filter, "?");
    let sql = format!(
        "SELECT {} FROM orders WHERE {condition} AND id >= ? AND id < ?
         ORDER BY id DESC LIMIT ?",
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
