//! Reading MySQL rows back into domain types (the parsing itself is `crate::decode`'s, shared
//! with the other backends). A row that does not parse is [`StoreError::Corrupt`].

use std::collections::HashMap;

use ordermill_core::ports::StoreError;
use ordermill_core::{Deal, DealId, Lifecycle, Order, OrderId, Product};
use sqlx::Row;
use sqlx::mysql::MySqlRow;
use uuid::Uuid;

use super::error::from_sqlx;
use crate::decode::{DealColumns, OrderColumns};
pub(crate) use crate::decode::{history_json, items_json};

/// The columns [`order_state`] reads, in its order. JSON columns are read as text (MySQL 8
/// sends its JSON type in a binary form of its own) and parsed with the domain's validation.
pub(crate) const ORDER_COLUMNS: &str = "orders.id, orders.customer_id, orders.status, \
     orders.total_minor, CAST(orders.items AS CHAR), orders.created_at, orders.idempotency_key, \
     orders.stock_state, orders.payment_state, CAST(orders.history AS CHAR), orders.pay_by, \
     orders.payment_url";

/// The columns [`product`] reads, in its order.
pub(crate) const PRODUCT_COLUMNS: &str = "sku, name, price_minor, stock, reserved";

/// Deals with their members: one row per member, in joining order within a deal (one row
/// with NULL members when there are none), the deal's id last. Read by [`deal`] and [`deals`].
macro_rules! deal_select {
    ($where:literal) => {
        concat!(
            "SELECT d.sku, d.deal_price_minor, d.group_size, d.created_at, d.expires_at, d.status,
                    m.customer_id, m.order_id, m.joined_at, d.id
             FROM deals d LEFT JOIN deal_members m ON m.deal_id = d.id
             WHERE ",
            $where,
            " ORDER BY d.id, m.joined_at, m.order_id"
        )
    };
}

/// A deal with its members in ONE statement, so they come from one snapshot.
pub(crate) const DEAL_SELECT: &str = deal_select!("d.id = ?");

/// [`DEAL_SELECT`] for `n` ids (`n` placeholders, bound in any order).
pub(crate) fn deals_select(n: usize) -> String {
    format!(deal_select!("d.id IN ({})"), vec!["?"; n].join(", "))
}

/// A product row ([`PRODUCT_COLUMNS`]).
pub(crate) fn product(row: &MySqlRow) -> Result<Product, StoreError> {
    let sku: String = row.try_get(0).map_err(from_sqlx)?;
    let name: String = row.try_get(1).map_err(from_sqlx)?;
    let price: i64 = row.try_get(2).map_err(from_sqlx)?;
    let stock: i64 = row.try_get(3).map_err(from_sqlx)?;
    let reserved: i64 = row.try_get(4).map_err(from_sqlx)?;
    crate::decode::product(sku, name, price, stock, reserved)
}

/// An order row ([`ORDER_COLUMNS`] starting at column `base`) with its lifecycle state.
pub(crate) fn order_state(row: &MySqlRow, base: usize) -> Result<(Order, Lifecycle), StoreError> {
    let id: Uuid = row.try_get(base).map_err(from_sqlx)?;
    OrderColumns {
        id: OrderId::from_uuid(id),
        customer_id: row.try_get(base + 1).map_err(from_sqlx)?,
        status: row.try_get(base + 2).map_err(from_sqlx)?,
        total_minor: row.try_get(base + 3).map_err(from_sqlx)?,
        items: row.try_get(base + 4).map_err(from_sqlx)?,
        created_at: row.try_get(base + 5).map_err(from_sqlx)?,
        idempotency_key: row.try_get(base + 6).map_err(from_sqlx)?,
        stock_state: row.try_get(base + 7).map_err(from_sqlx)?,
        payment_state: row.try_get(base + 8).map_err(from_sqlx)?,
        history: row.try_get(base + 9).map_err(from_sqlx)?,
        pay_by: row.try_get(base + 10).map_err(from_sqlx)?,
        payment_url: row.try_get(base + 11).map_err(from_sqlx)?,
    }
    .decode()
}

/// A deal read with [`DEAL_SELECT`]: `None` when there are no rows.
pub(crate) fn deal(id: DealId, found: &[MySqlRow]) -> Result<Option<Deal>, StoreError> {
    let Some(first) = found.first() else { return Ok(None) };
    let mut members = Vec::with_capacity(found.len());
    for row in found {
        let customer: Option<String> = row.try_get(6).map_err(from_sqlx)?;
        let order: Option<Uuid> = row.try_get(7).map_err(from_sqlx)?;
        let joined: Option<i64> = row.try_get(8).map_err(from_sqlx)?;
        if let (Some(customer), Some(order), Some(joined)) = (customer, order, joined) {
            members.push((customer, OrderId::from_uuid(order), joined));
        }
    }
    let group_size: i32 = first.try_get(2).map_err(from_sqlx)?;
    DealColumns {
        id,
        sku: first.try_get(0).map_err(from_sqlx)?,
        deal_price_minor: first.try_get(1).map_err(from_sqlx)?,
        group_size: i64::from(group_size),
        created_at: first.try_get(3).map_err(from_sqlx)?,
        expires_at: first.try_get(4).map_err(from_sqlx)?,
        status: first.try_get(5).map_err(from_sqlx)?,
        members,
    }
    .decode()
    .map(Some)
}

/// Deals read with [`deals_select`], by id (those not found are missing).
pub(crate) fn deals(found: &[MySqlRow]) -> Result<HashMap<DealId, Deal>, StoreError> {
    let ids: Vec<Uuid> =
        found.iter().map(|row| row.try_get(9)).collect::<Result<_, _>>().map_err(from_sqlx)?;
    let mut deals = HashMap::new();
    let mut start = 0;
    // Rows come ordered by deal id: each run of one id is one deal.
    while start < found.len() {
        let id = ids[start];
        let end = start + ids[start..].iter().take_while(|other| **other == id).count();
        let id = DealId::from_uuid(id);
        if let Some(deal) = deal(id, &found[start..end])? {
            deals.insert(id, deal);
        }
        start = end;
    }
    Ok(deals)
}
