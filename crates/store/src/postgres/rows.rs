//! Reading rows back into domain types and writing domain types as column values. A row that
//! does not parse is reported as [`StoreError::Corrupt`], never papered over.

use ordermill_core::ports::StoreError;
use ordermill_core::{Deal, DealId, Lifecycle, Order, OrderId, Product};
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

use super::error::from_sqlx;

/// The columns [`order_state`] reads, in its order. JSON columns come back as text: they are
/// parsed here, with the domain's own validation.
pub(crate) const ORDER_COLUMNS: &str = "orders.id, orders.customer_id, orders.status, \
     orders.total_minor, orders.items::text, orders.created_at, orders.idempotency_key, \
     orders.stock_state, orders.payment_state, orders.history::text, orders.pay_by, \
     orders.payment_url";

/// The columns [`product`] reads, in its order.
pub(crate) const PRODUCT_COLUMNS: &str = "sku, name, price_minor, stock, reserved";

/// Deals with their members in ONE statement, so they come from one snapshot (a join that
/// commits meanwhile is seen whole or not at all). The members arrive as three parallel
/// arrays in joining order, NULL when there are none; the deal's id last
/// ([`DEAL_ID_COLUMN`]). Read by [`deal`].
macro_rules! deal_select {
    ($deals:literal) => {
        concat!(
            "
SELECT d.sku, d.deal_price_minor, d.group_size, d.created_at, d.expires_at, d.status,
       m.customers, m.orders, m.joined, d.id
FROM deals d
LEFT JOIN LATERAL (
    SELECT array_agg(customer_id ORDER BY joined_at, order_id) AS customers,
           array_agg(order_id ORDER BY joined_at, order_id) AS orders,
           array_agg(joined_at ORDER BY joined_at, order_id) AS joined
    FROM deal_members WHERE deal_id = d.id
) m ON true
WHERE ",
            $deals
        )
    };
}

/// One deal, `$1`.
pub(crate) const DEAL_SELECT: &str = deal_select!("d.id = $1");

/// The deals of `$1` (a `uuid[]`), in no particular order.
pub(crate) const DEALS_SELECT: &str = deal_select!("d.id = ANY($1::uuid[])");

/// Where a [`DEALS_SELECT`] row holds its deal's id.
pub(crate) const DEAL_ID_COLUMN: usize = 9;

use crate::decode::{DealColumns, OrderColumns, corrupt};
pub(crate) use crate::decode::{history_json, items_json};

/// The smallest and largest of `ids` (nil for none): statements that reach orders by id bound
/// them with it (`id BETWEEN $first AND $last`), so the executor opens only the partitions
/// the ids span.
pub(crate) fn id_range(ids: &[Uuid]) -> (Uuid, Uuid) {
    (ids.iter().min().copied().unwrap_or_default(), ids.iter().max().copied().unwrap_or_default())
}

/// A product row ([`PRODUCT_COLUMNS`]).
pub(crate) fn product(row: &PgRow) -> Result<Product, StoreError> {
    let sku: String = row.try_get(0).map_err(from_sqlx)?;
    let name: String = row.try_get(1).map_err(from_sqlx)?;
    let price: i64 = row.try_get(2).map_err(from_sqlx)?;
    let stock: i64 = row.try_get(3).map_err(from_sqlx)?;
    let reserved: i64 = row.try_get(4).map_err(from_sqlx)?;
    crate::decode::product(sku, name, price, stock, reserved)
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
    let pay_by: Option<i64> = row.try_get(base + 10).map_err(from_sqlx)?;
    let payment_url: Option<String> = row.try_get(base + 11).map_err(from_sqlx)?;

    OrderColumns {
        id: OrderId::from_uuid(id),
        customer_id: customer,
        status,
        total_minor: total,
        items,
        created_at,
        idempotency_key: key,
        stock_state: stock,
        payment_state: payment,
        history,
        pay_by,
        payment_url,
    }
    .decode()
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
        .map(|((customer, order), joined)| (customer, OrderId::from_uuid(order), joined))
        .collect();
    DealColumns {
        id,
        sku,
        deal_price_minor: price,
        group_size: i64::from(size),
        created_at: created,
        expires_at: expires,
        status,
        members,
    }
    .decode()
}
