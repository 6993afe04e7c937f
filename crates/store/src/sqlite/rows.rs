//! Reading rows back into domain types. A row that does not parse is reported as
//! [`StoreError::Corrupt`], never papered over.

use ordermill_core::ports::StoreError;
use ordermill_core::{
    CustomerId, IdempotencyKey, Lifecycle, Money, Order, OrderId, OrderLine, OrderStatus,
    PaymentState, Product, ProductName, Quantity, Sku, StatusChange, StockLevel, StockState,
    UnixMillis,
};
use serde::{Deserialize, Serialize};

pub(crate) const ORDER_COLUMNS: &str = "id, customer_id, status, total_minor, items, created_at, \
     idempotency_key, stock_state, payment_state, history";

/// How a status change is stored in the `history` column.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredChange {
    status: String,
    at: i64,
}

pub(crate) fn history_json(history: &[StatusChange]) -> Option<String> {
    if history.is_empty() {
        return None;
    }
    let stored: Vec<StoredChange> = history
        .iter()
        .map(|c| StoredChange { status: c.status.as_str().to_owned(), at: c.at.0 })
        .collect();
    Some(serde_json::to_string(&stored).expect("serializing strings and integers cannot fail"))
}
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
    let stock: String = row.get(base + 7)?;
    let payment: String = row.get(base + 8)?;
    let history: Option<String> = row.get(base + 9)?;
    let order = order(row, base)?;
    Ok((|| {
        let mut order = order?;
        if let Some(history) = history {
            let stored: Vec<StoredChange> = serde_json::from_str(&history).map_err(corrupt)?;
            order.history = stored
                .into_iter()
                .map(|c| {
                    let status = OrderStatus::parse(&c.status)
                        .ok_or_else(|| corrupt(format!("unknown status {:?}", c.status)))?;
                    Ok(StatusChange { status, at: UnixMillis(c.at) })
                })
                .collect::<Result<_, StoreError>>()?;
        }
        let state = Lifecycle {
            status: order.status,
            stock: StockState::parse(&stock)
                .ok_or_else(|| corrupt(format!("unknown stock state {stock:?}")))?,
            payment: PaymentState::parse(&payment)
                .ok_or_else(|| corrupt(format!("unknown payment state {payment:?}")))?,
        };
        Ok((order, state))
    })())
}

/// An order row (the first seven columns of [`ORDER_COLUMNS`]; history is read by
/// [`order_state`]).
fn order(row: &rusqlite::Row<'_>, base: usize) -> rusqlite::Result<Result<Order, StoreError>> {
    let id: String = row.get(base)?;
    let customer: String = row.get(base + 1)?;
    let status: String = row.get(base + 2)?;
    let total: i64 = row.get(base + 3)?;
    let items: String = row.get(base + 4)?;
    let created_at: i64 = row.get(base + 5)?;
    let key: Option<String> = row.get(base + 6)?;
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
            history: Vec::new(),
        })
    })())
}
