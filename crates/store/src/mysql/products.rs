//! The catalog of record: products with their stock and `reserved` counts.

use ordermill_core::Product;
use ordermill_core::ports::StoreError;
use sqlx::MySqlConnection;

use super::error::{DUPLICATE, TxError, from_sqlx, number};
use super::rows;
use super::tx::transaction;

/// Creates or replaces a product, keeping `reserved`; returns (stored, previous), read and
/// written in one transaction with the row locked, so nothing changes stock in between. A
/// concurrent insert of the same new SKU makes ours a duplicate: the transaction runs again
/// and then finds (and locks) that row.
pub(crate) async fn upsert(
    conn: &mut MySqlConnection,
    product: &Product,
) -> Result<(Product, Option<Product>), StoreError> {
    transaction!(conn, |tx| upsert_in(&mut tx, product))
}

async fn upsert_in(
    conn: &mut MySqlConnection,
    product: &Product,
) -> Result<(Product, Option<Product>), TxError> {
    let previous = select(conn, product.sku.as_str(), " FOR UPDATE").await?;
    match &previous {
        Some(before) => {
            before.check_restock(product.stock).map_err(StoreError::from)?;
            sqlx::query("UPDATE products SET name = ?, price_minor = ?, stock = ? WHERE sku = ?")
                .bind(product.name.as_str())
                .bind(product.price.minor())
                .bind(product.stock.get())
                .bind(product.sku.as_str())
                .execute(&mut *conn)
                .await?;
        }
        None => {
            let inserted = sqlx::query(
                "INSERT INTO products (sku, name, price_minor, stock) VALUES (?, ?, ?, ?)",
            )
            .bind(product.sku.as_str())
            .bind(product.name.as_str())
            .bind(product.price.minor())
            .bind(product.stock.get())
            .execute(&mut *conn)
            .await;
            if let Err(error) = inserted {
                return Err(match number(&error) {
                    Some(DUPLICATE) => TxError::Raced("the product was inserted concurrently"),
                    _ => error.into(),
                });
            }
        }
    }
    let stored = select(conn, product.sku.as_str(), "").await?.ok_or_else(|| {
        StoreError::Corrupt(format!("product {} vanished while written", product.sku.as_str()))
    })?;
    Ok((stored, previous))
}

async fn select(
    conn: &mut MySqlConnection,
    sku: &str,
    lock: &str,
) -> Result<Option<Product>, TxError> {
    let sql = format!("SELECT {} FROM products WHERE sku = ?{lock}", rows::PRODUCT_COLUMNS);
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(sku).fetch_optional(&mut *conn).await?;
    Ok(row.map(|row| rows::product(&row)).transpose()?)
}

/// One product.
pub(crate) async fn get(
    conn: &mut MySqlConnection,
    sku: &str,
) -> Result<Option<Product>, StoreError> {
    let sql = format!("SELECT {} FROM products WHERE sku = ?", rows::PRODUCT_COLUMNS);
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(sku)
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?
        .map(|row| rows::product(&row))
        .transpose()
}

/// Every product, by SKU.
pub(crate) async fn load(conn: &mut MySqlConnection) -> Result<Vec<Product>, StoreError> {
    let sql = format!("SELECT {} FROM products ORDER BY sku", rows::PRODUCT_COLUMNS);
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?
        .iter()
        .map(rows::product)
        .collect()
}
