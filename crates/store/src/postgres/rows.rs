//! Reading rows back into domain types and writing domain types as column values. A row that
//! does not parse is reported as [`StoreError::Corrupt`], never papered over.

use ordermill_core::ports::StoreError;
use ordermill_core::{
    CustomerId, IdempotencyKey, Lifecycle, Money, Order, OrderId, OrderLine, OrderStatus,
    PaymentState, Product, ProductName, Quantity, Sku, StatusChange, StockLevel, StockState,
    UnixMillis,
};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::error::from_sqlx;

/// The columns [`order_state`] reads, in its order. JSON columns come back as text: they are
/// parsed here, with the domain's own validation.
pub(crate) const ORDER_COLUMNS: &str = "orders.id, orders.customer_id, orders.status, \
     orders.total_minor, orders.items::text, orders.created_at, orders.idempotency_key, \
     orders.stock_state, orders.payment_state, orders.history::text";

/// The columns [`product`] reads, in its order.
pub(crate) const PRODUCT_COLUMNS: &str = "sku, name, price_minor, stock, reserved";

/// How a status change is stored in the `history` column (the same shape as SQLite's).
#[derive(Serialize, Deserialize)]
struct StoredChange {
    status: String,
    at: i64,
}

/// How an order line is read back from the `items` column (written as `OrderLine` serializes).
#[derive(Deserialize)]
struct LineRow {
    sku: String,
    quantity: i64,
    unit_price: String,
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// The `items` column's value for an order.
pub(crate) fn items_json(lines: &[OrderLine]) -> String {
    serde_json::to_string(lines).expect("serializing validated order lines cannot fail")
}

/// The `history` column's value: `None` while there is no change after 'accepted'.
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

/// A product row ([`PRODUCT_COLUMNS`]).
pub(crate) fn product(row: &PgRow) -> Result<Product, StoreError> {
    let sku: String = row.try_get(0).map_err(from_sqlx)?;
    let name: String = row.try_get(1).map_err(from_sqlx)?;
    let price: i64 = row.try_get(2).map_err(from_sqlx)?;
    let stock: i64 = row.try_get(3).map_err(from_sqlx)?;
    let reserved: i64 = row.try_get(4).map_err(from_sqlx)?;
    Ok(Product {
        sku: Sku::parse(sku).map_err(corrupt)?,
        name: ProductName::parse(name).map_err(corrupt)?,
        price: Money::from_minor(price).ok_or_else(|| corrupt("price out of range"))?,
        stock: StockLevel::parse(stock).map_err(corrupt)?,
        reserved,
    })
}

/// An order row ([`ORDER_COLUMNS`] starting at column `base`) with its lifecycle state.
pub(crate) fn order_state(row: &PgRow, base: usize) -> Result<(Order, Lifecycle), StoreError> {
    let id: Uuid = row.try_get(base).map_err(from_sqlx)?;
    let customer: String = row.try_get(base + 1).map_err(from_sqlx)?;
    let status: String = row.try_get(base + 2).map_err(from_sqlx)?;
    let total: i64 = row.try_get(base + 3).map_err(from_sqlx)?;
    let items: String = row.try_get(base + 4).map_err(from_sqlx)?;
    let created_at: i64 = row.try_get(base + 5).map_err(from_sqlx)?;
    let key: Option<String> = row.try_get(base + 6).map_err(from_sqlx)?;
    let stock: String = row.try_get(base + 7).map_err(from_sqlx)?;
    let payment: String = row.try_get(base + 8).map_err(from_sqlx)?;
    let history: Option<String> = row.try_get(base + 9).map_err(from_sqlx)?;

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
    let status =
        OrderStatus::parse(&status).ok_or_else(|| corrupt(format!("unknown status {status:?}")))?;
    let history = match history {
        None => Vec::new(),
        Some(history) => serde_json::from_str::<Vec<StoredChange>>(&history)
            .map_err(corrupt)?
            .into_iter()
            .map(|c| {
                let status = OrderStatus::parse(&c.status)
                    .ok_or_else(|| corrupt(format!("unknown status {:?}", c.status)))?;
                Ok(StatusChange { status, at: UnixMillis(c.at) })
            })
            .collect::<Result<_, StoreError>>()?,
    };
    let order = Order {
        id: OrderId::from_uuid(id),
        customer_id: CustomerId::parse(customer).map_err(corrupt)?,
        total: Money::total_from_minor(total).ok_or_else(|| corrupt("negative total"))?,
        lines,
        status,
        created_at: UnixMillis(created_at),
        idempotency_key: key.map(|k| IdempotencyKey::parse(&k)).transpose().map_err(corrupt)?,
        history,
    };
    let state = Lifecycle {
        status,
        stock: StockState::parse(&stock)
            .ok_or_else(|| corrupt(format!("unknown stock state {stock:?}")))?,
        payment: PaymentState::parse(&payment)
            .ok_or_else(|| corrupt(format!("unknown payment state {payment:?}")))?,
    };
    Ok((order, state))
}
