//! The catalog of record: products with their stock and `reserved` counts.

use ordermill_core::Product;
use ordermill_core::ports::StoreError;
use sqlx::{Connection, PgConnection, Row};

use super::error::from_sqlx;
use super::rows;

/// How often an upsert is retried when a concurrent insert of the same new SKU wins the race.
const UPSERT_ATTEMPTS: usize = 3;

/// Creates or replaces a product, keeping `reserved`; returns (stored, previous), read and
/// written in one transaction with the row locked, so nothing changes stock in between.
pub(crate) async fn upsert(
    conn: &mut PgConnection,
    product: &Product,
) -> Result<(Product, Option<Product>), StoreError> {
    let select =
        format!("SELECT {} FROM products WHERE sku = $1 FOR UPDATE", rows::PRODUCT_COLUMNS);
    let upsert = format!(
        "INSERT INTO products (sku, name, price_minor, stock) VALUES ($1, $2, $3, $4)
         ON CONFLICT (sku) DO UPDATE SET
             name = excluded.name, price_minor = excluded.price_minor, stock = excluded.stock
         RETURNING {}, xmax = 0 AS inserted",
        rows::PRODUCT_COLUMNS
    );
    for _ in 0..UPSERT_ATTEMPTS {
        let mut tx = conn.begin().await.map_err(from_sqlx)?;
        let previous = sqlx::query(sqlx::AssertSqlSafe(select.as_str()))
            .bind(product.sku.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(from_sqlx)?
            .map(|row| rows::product(&row))
            .transpose()?;
        if let Some(before) = &previous {
            before.check_restock(product.stock)?;
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(upsert.as_str()))
            .bind(product.sku.as_str())
            .bind(product.name.as_str())
            .bind(product.price.minor())
            .bind(product.stock.get())
            .fetch_one(&mut *tx)
            .await
            .map_err(from_sqlx)?;
        let inserted: bool = row.try_get("inserted").map_err(from_sqlx)?;
        if previous.is_none() && !inserted {
            // Another writer inserted this SKU after our SELECT found nothing (a missing row
            // cannot be locked). Our "previous = None" would be wrong and the replaced row
            // was never checked against its reserved count: undo and read it again, locked.
            tracing::debug!(sku = %product.sku.as_str(), "Product upsert raced an insert of the same SKU; retrying.");
            tx.rollback().await.map_err(from_sqlx)?;
            continue;
        }
        let stored = rows::product(&row)?;
        tx.commit().await.map_err(from_sqlx)?;
        return Ok((stored, previous));
    }
    Err(StoreError::Unavailable(format!(
        "product {} kept being inserted concurrently; retry",
        product.sku.as_str()
    )))
}

/// One product.
pub(crate) async fn get(conn: &mut PgConnection, sku: &str) -> Result<Option<Product>, StoreError> {
    let sql = format!("SELECT {} FROM products WHERE sku = $1", rows::PRODUCT_COLUMNS);
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(sku)
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?
        .map(|row| rows::product(&row))
        .transpose()
}

/// Every product, by SKU.
pub(crate) async fn load(conn: &mut PgConnection) -> Result<Vec<Product>, StoreError> {
    let sql = format!("SELECT {} FROM products ORDER BY sku", rows::PRODUCT_COLUMNS);
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?
        .iter()
        .map(rows::product)
        .collect()
}
