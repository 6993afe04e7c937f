//! Per-customer purchase limits: the configured limits, and the units each customer holds
//! (to rebuild the server's in-memory counts). Same answers as `sqlite/deals.rs`.

use ordermill_core::ports::StoreError;
use ordermill_core::{CustomerId, Sku};
use sqlx::{Connection, PgConnection};

use super::error::from_sqlx;

/// The per-customer limit check of a statement that writes orders from arrays, as CTEs to
/// follow its own: `$2` the orders' customers, `$5` their items (JSON text), `$10` their
/// distinct SKUs. Counts each customer's new units into `customer_units` and leaves in `over`
/// the limited SKUs some customer now holds more of than allowed; the statement ends with
/// `ordermill_require_limit` on `over` (0006), which fails it as a whole.
macro_rules! limits_counted {
    () => {
        "limited AS (
    SELECT sku, per_customer_limit FROM purchase_limits WHERE sku = ANY($10::text[])
),
wanted AS (
    SELECT o.customer_id, line ->> 'sku' AS sku, sum((line ->> 'quantity')::bigint) AS units
    FROM UNNEST($2::text[], $5::text[]) AS o(customer_id, items)
    CROSS JOIN LATERAL json_array_elements(o.items::json) AS line
    WHERE EXISTS (SELECT 1 FROM limited) AND line ->> 'sku' IN (SELECT sku FROM limited)
    GROUP BY 1, 2
),
counted AS (
    INSERT INTO customer_units AS c (sku, customer_id, units)
    SELECT sku, customer_id, units FROM wanted ORDER BY sku, customer_id
    ON CONFLICT (sku, customer_id) DO UPDATE SET units = c.units + EXCLUDED.units
    RETURNING c.sku, c.units
),
over AS (
    SELECT DISTINCT counted.sku FROM counted JOIN limited USING (sku)
    WHERE counted.units > limited.per_customer_limit
)"
    };
}
pub(crate) use limits_counted;

/// Sets (`Some`) or removes (`None`) a SKU's limit, and recounts what each customer holds of
/// it (`customer_units`, 0006) in the same transaction. The product row is locked first, as a
/// group commit locks it, so no commit of that SKU lands between the recount and the limit.
pub(crate) async fn set(
    conn: &mut PgConnection,
    sku: &Sku,
    limit: Option<u32>,
) -> Result<(), StoreError> {
    let mut tx = conn.begin().await.map_err(from_sqlx)?;
    sqlx::query("SELECT 1 FROM products WHERE sku = $1 FOR UPDATE")
        .bind(sku.as_str())
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
    sqlx::query("DELETE FROM customer_units WHERE sku = $1")
        .bind(sku.as_str())
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
    if limit.is_some() {
        sqlx::query(
            "INSERT INTO customer_units (sku, customer_id, units)
             SELECT $1, o.customer_id, sum((line ->> 'quantity')::bigint)
             FROM orders o CROSS JOIN LATERAL json_array_elements(o.items) AS line
             WHERE o.status <> 'cancelled' AND line ->> 'sku' = $1
             GROUP BY o.customer_id",
        )
        .bind(sku.as_str())
        .execute(&mut *tx)
        .await
        .map_err(from_sqlx)?;
    }
    let query = match limit {
        Some(limit) => sqlx::query(
            "INSERT INTO purchase_limits (sku, per_customer_limit) VALUES ($1, $2)
             ON CONFLICT (sku) DO UPDATE SET per_customer_limit = excluded.per_customer_limit",
        )
        .bind(sku.as_str())
        .bind(i64::from(limit)),
        None => sqlx::query("DELETE FROM purchase_limits WHERE sku = $1").bind(sku.as_str()),
    };
    query.execute(&mut *tx).await.map_err(from_sqlx)?;
    tx.commit().await.map_err(from_sqlx)?;
    Ok(())
}

/// Every SKU with a limit, by SKU.
pub(crate) async fn all(conn: &mut PgConnection) -> Result<Vec<(Sku, u32)>, StoreError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT sku, per_customer_limit FROM purchase_limits ORDER BY sku")
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?;
    crate::decode::limits(rows)
}

/// Units of `sku` per customer in orders that are not cancelled. A scan of `orders` (the
/// lines live in the `items` JSON column; see `0002_deals.sql` for why it has no index): it
/// runs when a limit is loaded or set, not per order.
pub(crate) async fn units_by_customer(
    conn: &mut PgConnection,
    sku: &Sku,
) -> Result<Vec<(CustomerId, u64)>, StoreError> {
    // SUM of bigint is numeric in PostgreSQL: cast back so it decodes as i64.
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT o.customer_id, SUM((line ->> 'quantity')::bigint)::bigint
         FROM orders o CROSS JOIN LATERAL json_array_elements(o.items) AS line
         WHERE o.status <> 'cancelled' AND line ->> 'sku' = $1
         GROUP BY o.customer_id",
    )
    .bind(sku.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    crate::decode::customer_units(rows)
}
