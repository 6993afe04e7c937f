//! Per-customer purchase limits: the configured limits, and the units each customer holds.
//! Same answers as the other stores.

use ordermill_core::ports::StoreError;
use ordermill_core::{CustomerId, Sku};
use sqlx::MySqlConnection;

use super::error::{TxError, from_sqlx};
use super::tx::transaction;

/// The lines of every order not cancelled, one row per line (`JSON_TABLE`: MySQL 8, MariaDB
/// 10.6). A scan of `orders` by design: it runs when a limit is loaded or set, not per order.
const UNITS_OF_SKU: &str = "
SELECT o.customer_id, CAST(SUM(line.quantity) AS SIGNED)
FROM orders o,
     JSON_TABLE(o.items, '$[*]' COLUMNS (sku VARCHAR(64) PATH '$.sku',
                                         quantity BIGINT PATH '$.quantity')) AS line
WHERE o.status <> 'cancelled' AND line.sku = ?
GROUP BY o.customer_id";

/// Sets (`Some`) or removes (`None`) a SKU's limit, and recounts what each customer holds of
/// it (`customer_units`) in the same transaction. The product row is locked first, as a group
/// commit locks it, so no commit of that SKU lands between the recount and the limit.
pub(crate) async fn set(
    conn: &mut MySqlConnection,
    sku: &Sku,
    limit: Option<u32>,
) -> Result<(), StoreError> {
    transaction!(conn, |tx| set_in(&mut tx, sku, limit))
}

async fn set_in(conn: &mut MySqlConnection, sku: &Sku, limit: Option<u32>) -> Result<(), TxError> {
    sqlx::query("SELECT 1 FROM products WHERE sku = ? FOR UPDATE")
        .bind(sku.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM customer_units WHERE sku = ?")
        .bind(sku.as_str())
        .execute(&mut *conn)
        .await?;
    match limit {
        Some(limit) => {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "INSERT INTO customer_units (sku, customer_id, units)
                 SELECT ?, counted.* FROM ({UNITS_OF_SKU}) AS counted"
            )))
            .bind(sku.as_str())
            .bind(sku.as_str())
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO purchase_limits (sku, per_customer_limit) VALUES (?, ?)
                 ON DUPLICATE KEY UPDATE per_customer_limit = VALUES(per_customer_limit)",
            )
            .bind(sku.as_str())
            .bind(i64::from(limit))
            .execute(&mut *conn)
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM purchase_limits WHERE sku = ?")
                .bind(sku.as_str())
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Every SKU with a limit, by SKU.
pub(crate) async fn all(conn: &mut MySqlConnection) -> Result<Vec<(Sku, u32)>, StoreError> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT sku, per_customer_limit FROM purchase_limits ORDER BY sku")
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?;
    crate::decode::limits(rows)
}

/// Units of `sku` per customer in orders that are not cancelled.
pub(crate) async fn units_by_customer(
    conn: &mut MySqlConnection,
    sku: &Sku,
) -> Result<Vec<(CustomerId, u64)>, StoreError> {
    let rows: Vec<(String, i64)> = sqlx::query_as(UNITS_OF_SKU)
        .bind(sku.as_str())
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    crate::decode::customer_units(rows)
}
