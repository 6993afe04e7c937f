//! Reading rows back into domain types and writing domain types as column values. A row that
//! does not parse is reported as [`StoreError::Corrupt`], never papered over.

use ordermill_core::ports::StoreError;
use ordermill_core::{
    CustomerId, Deal, DealId, DealMember, DealStatus, GroupSize, IdempotencyKey, Lifecycle, Money,
    Order, OrderId, OrderLine, OrderStatus, PaymentState, Product, ProductName, Quantity, Sku,
    StatusChange, StockLevel, StockState, UnixMillis,
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

/// A deal with its members in ONE statement, so they come from one snapshot (a join that
/// commits meanwhile is seen whole or not at all). The members arrive as three parallel
/// arrays in joining order, NULL when there are none. Read by [`deal`].
pub(crate) const DEAL_SELECT: &str = "
SELECT d.sku, d.deal_price_minor, d.group_size, d.created_at, d.expires_at, d.status,
       m.customers, m.orders, m.joined
FROM deals d
LEFT JOIN LATERAL (
    SELECT array_agg(customer_id ORDER BY joined_at, order_id) AS customers,
           array_agg(order_id ORDER BY joined_at, order_id) AS orders,
           array_agg(joined_at ORDER BY joined_at, order_id) AS joined
    FROM deal_members WHERE deal_id = d.id
) m ON true
WHERE d.id = $1";

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

/// A deal row read with [`DEAL_SELECT`].
pub(crate) fn deal(id: DealId, row: &PgRow) -> Result<Deal, StoreError> {
    let sku: String = row.try_get(0).map_err(from_sqlx)?;
    let price: i64 = row.try_get(1).map_err(from_sqlx)?;
    let size: i32 = row.try_get(2).map_err(from_sqlx)?;
    let created: i64 = row.try_get(3).map_err(from_sqlx)?;
    let expires: i64 = row.try_get(4).map_err(from_sqlx)?;
    let status: String = row.try_get(5).map_err(from_sqlx)?;
    let customers: Option<Vec<String>> = row.try_get(6).map_err(from_sqlx)?;
    let orders: Option<Vec<Uuid>> = row.try_get(7).map_err(from_sqlx)?;
    let joined: Option<Vec<i64>> = row.try_get(8).map_err(from_sqlx)?;
    let (customers, orders, joined) =
        (customers.unwrap_or_default(), orders.unwrap_or_default(), joined.unwrap_or_default());
    if customers.len() != orders.len() || orders.len() != joined.len() {
        return Err(corrupt(format!("deal {id}: member arrays of different lengths")));
    }
    let members = customers
        .into_iter()
        .zip(orders)
        .zip(joined)
        .map(|((customer, order), joined)| {
            Ok(DealMember {
                customer_id: CustomerId::parse(customer).map_err(corrupt)?,
                order_id: OrderId::from_uuid(order),
                joined_at: UnixMillis(joined),
            })
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    Ok(Deal {
        id,
        sku: Sku::parse(sku).map_err(corrupt)?,
        deal_price: Money::from_minor(price).ok_or_else(|| corrupt("deal price out of range"))?,
        group_size: GroupSize::parse(i64::from(size)).map_err(corrupt)?,
        created_at: UnixMillis(created),
        expires_at: UnixMillis(expires),
        status: DealStatus::parse(&status)
            .ok_or_else(|| corrupt(format!("unknown deal status {status:?}")))?,
        members,
    })
}
