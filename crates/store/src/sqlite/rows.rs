//! Reading rows back into domain types. A row that does not parse is reported as
//! [`StoreError::Corrupt`], never papered over.

use ordermill_core::ports::StoreError;
use ordermill_core::{
    CustomerId, IdempotencyKey, Money, Order, OrderId, OrderLine, OrderStatus, Product,
    ProductName, Quantity, Sku, StockLevel, UnixMillis,
};
use serde::Deserialize;

pub(crate) const ORDER_COLUMNS: &str =
    "id, customer_id, status, total_minor, items, created_at, idempotency_key";
pub(crate) const PRODUCT_COLUMNS: &str = "sku, name, price_minor, stock, reserved";

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

#[derive(Deserialize)]
struct LineRow {
    sku: String,
    quantity: i64,
    unit_price: String,
}

pub(crate) fn product(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Product, StoreError>> {
    let sku: String = row.get(0)?;
    let name: String = row.get(1)?;
    let price: i64 = row.get(2)?;
    let stock: i64 = row.get(3)?;
    let reserved: i64 = row.get(4)?;
    Ok((|| {
        Ok(Product {
            sku: Sku::parse(sku).map_err(corrupt)?,
            name: ProductName::parse(name).map_err(corrupt)?,
            price: Money::from_minor(price).ok_or_else(|| corrupt("price out of range"))?,
            stock: StockLevel::parse(stock).map_err(corrupt)?,
            reserved,
        })
    })())
}

pub(crate) fn order(row: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Order, StoreError>> {
    let id: String = row.get(0)?;
    let customer: String = row.get(1)?;
    let status: String = row.get(2)?;
    let total: i64 = row.get(3)?;
    let items: String = row.get(4)?;
    let created_at: i64 = row.get(5)?;
    let key: Option<String> = row.get(6)?;
    Ok((|| {
        let lines: Vec<LineRow> = serde_json::from_str(&items).map_err(corrupt)?;
        let lines = lines
            .into_iter()
            .map(|l| {
                OrderLine::priced(
                    Sku::parse(l.sku)?,
                    Quantity::parse(l.quantity)?,
                    Money::parse("unit_price", &l.unit_price)?,
                )
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(corrupt)?;
        Ok(Order {
            id: OrderId::parse(&id).map_err(corrupt)?,
            customer_id: CustomerId::parse(customer).map_err(corrupt)?,
            total: Money::total_from_minor(total).ok_or_else(|| corrupt("negative total"))?,
            lines,
            status: OrderStatus::parse(&status)
                .ok_or_else(|| corrupt(format!("unknown status {status:?}")))?,
            created_at: UnixMillis(created_at),
            idempotency_key: key.map(|k| IdempotencyKey::parse(&k)).transpose().map_err(corrupt)?,
        })
    })())
}
