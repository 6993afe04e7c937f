//! Reading SQLite rows into the shapes [`crate::decode`] turns into domain types.

use ordermill_core::ports::StoreError;
use ordermill_core::{Lifecycle, Order, OrderId, Product};

pub(crate) const ORDER_COLUMNS: &str = "id, customer_id, status, total_minor, items, created_at, \
     idempotency_key, stock_state, payment_state, history, pay_by, payment_url";

use crate::decode::OrderColumns;
pub(crate) use crate::decode::history_json;

pub(crate) const PRODUCT_COLUMNS: &str = "sku, name, price_minor, stock, reserved";

pub(crate) fn product(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Product, StoreError>> {
    let sku: String = row.get(0)?;
    let name: String = row.get(1)?;
    let price: i64 = row.get(2)?;
    let stock: i64 = row.get(3)?;
    let reserved: i64 = row.get(4)?;
    Ok(crate::decode::product(sku, name, price, stock, reserved))
}

/// An order row with its lifecycle state.
pub(crate) fn order_state(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<(Order, Lifecycle), StoreError>> {
    order_state_at(row, 0)
}

/// [`order_state`] for [`ORDER_COLUMNS`] starting at column `base`.
pub(crate) fn order_state_at(
    row: &rusqlite::Row<'_>,
    base: usize,
) -> rusqlite::Result<Result<(Order, Lifecycle), StoreError>> {
    Ok(OrderColumns {
        id: OrderId::from_uuid(row.get(base)?),
        customer_id: row.get(base + 1)?,
        status: row.get(base + 2)?,
        total_minor: row.get(base + 3)?,
        items: row.get(base + 4)?,
        created_at: row.get(base + 5)?,
        idempotency_key: row.get(base + 6)?,
        stock_state: row.get(base + 7)?,
        payment_state: row.get(base + 8)?,
        history: row.get(base + 9)?,
        pay_by: row.get(base + 10)?,
        payment_url: row.get(base + 11)?,
    }
    .decode())
}
