//! Stored values back into domain types, for every backend: each backend reads its columns
//! into these plain shapes, and the parsing (with the domain's own validation) happens once,
//! here. A value that does not parse is [`StoreError::Corrupt`], never papered over.

use ordermill_core::ports::{OrderFilter, StoreError};
use ordermill_core::{
    AwaitedPayment, CustomerId, Deal, DealId, DealMember, DealStatus, GroupSize, HistoryNote,
    IdempotencyKey, Lifecycle, Money, Order, OrderId, OrderLine, OrderStatus, PaymentState,
    Product, ProductName, Quantity, Sku, StatusChange, StockLevel, StockState, UnixMillis,
};
use serde::{Deserialize, Serialize};

/// How a status change is stored in the `history` column.
#[derive(Serialize, Deserialize)]
struct StoredChange {
    status: String,
    at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

/// How an order line is read back from the `items` column (written as `OrderLine` serializes).
#[derive(Deserialize)]
struct LineRow {
    sku: String,
    quantity: i64,
    unit_price: String,
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// `purchase_limits` rows `(sku, per_customer_limit)` as the ports hand them out.
pub(crate) fn limits(rows: Vec<(String, i64)>) -> Result<Vec<(Sku, u32)>, StoreError> {
    rows.into_iter()
        .map(|(sku, limit)| {
            let limit = u32::try_from(limit)
                .map_err(|_| corrupt(format!("limit {limit} of {sku} is not a u32")))?;
            Ok((Sku::parse(sku).map_err(corrupt)?, limit))
        })
        .collect()
}

/// `(customer, units)` rows of a SKU's per-customer count.
pub(crate) fn customer_units(
    rows: Vec<(String, i64)>,
) -> Result<Vec<(CustomerId, u64)>, StoreError> {
    rows.into_iter()
        .map(|(customer, units)| {
            Ok((CustomerId::parse(customer).map_err(corrupt)?, units.max(0).unsigned_abs()))
        })
        .collect()
}

/// The `items` column's value for an order.
pub(crate) fn items_json(lines: &[OrderLine]) -> String {
    serde_json::to_string(lines).expect("serializing validated order lines cannot fail")
}

/// The `history` column's value: `None` while there is no stored change.
pub(crate) fn history_json(history: &[StatusChange]) -> Option<String> {
    if history.is_empty() {
        return None;
    }
    let stored: Vec<StoredChange> = history
        .iter()
        .map(|c| StoredChange {
            status: c.status.as_str().to_owned(),
            at: c.at.0,
            note: c.note.map(|n| n.as_str().to_owned()),
        })
        .collect();
    Some(serde_json::to_string(&stored).expect("serializing strings and integers cannot fail"))
}

/// A product's columns.
pub(crate) fn product(
    sku: String,
    name: String,
    price: i64,
    stock: i64,
    reserved: i64,
) -> Result<Product, StoreError> {
    Ok(Product {
        sku: Sku::parse(sku).map_err(corrupt)?,
        name: ProductName::parse(name).map_err(corrupt)?,
        price: Money::from_minor(price).ok_or_else(|| corrupt("price out of range"))?,
        stock: StockLevel::parse(stock).map_err(corrupt)?,
        reserved,
    })
}

/// An order's columns as stored.
pub(crate) struct OrderColumns {
    pub id: OrderId,
    pub customer_id: String,
    pub status: String,
    pub total_minor: i64,
    pub items: String,
    pub created_at: i64,
    pub idempotency_key: Option<String>,
    pub stock_state: String,
    pub payment_state: String,
    pub history: Option<String>,
    pub pay_by: Option<i64>,
    pub payment_url: Option<String>,
}

impl OrderColumns {
    /// The order and its lifecycle state.
    pub(crate) fn decode(self) -> Result<(Order, Lifecycle), StoreError> {
        let lines: Vec<LineRow> = serde_json::from_str(&self.items).map_err(corrupt)?;
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
        let status = order_status(&self.status)?;
        let history = match self.history {
            None => Vec::new(),
            Some(history) => serde_json::from_str::<Vec<StoredChange>>(&history)
                .map_err(corrupt)?
                .into_iter()
                .map(|c| {
                    let note = c
                        .note
                        .map(|n| {
                            HistoryNote::parse(&n)
                                .ok_or_else(|| corrupt(format!("unknown history note {n:?}")))
                        })
                        .transpose()?;
                    Ok(StatusChange {
                        note,
                        ..StatusChange::new(order_status(&c.status)?, UnixMillis(c.at))
                    })
                })
                .collect::<Result<_, StoreError>>()?,
        };
        let key = self.idempotency_key.map(|k| IdempotencyKey::parse(&k)).transpose();
        let order = Order {
            id: self.id,
            customer_id: CustomerId::parse(self.customer_id).map_err(corrupt)?,
            total: Money::from_minor(self.total_minor).ok_or_else(|| corrupt("negative total"))?,
            lines,
            status,
            created_at: UnixMillis(self.created_at),
            idempotency_key: key.map_err(corrupt)?,
            history,
            awaited_payment: match (self.pay_by, self.payment_url) {
                (Some(pay_by), Some(payment_url)) => {
                    Some(Box::new(AwaitedPayment { pay_by: UnixMillis(pay_by), payment_url }))
                }
                _ => None,
            },
        };
        let stock = &self.stock_state;
        let payment = &self.payment_state;
        let state = Lifecycle {
            status,
            stock: StockState::parse(stock)
                .ok_or_else(|| corrupt(format!("unknown stock state {stock:?}")))?,
            payment: PaymentState::parse(payment)
                .ok_or_else(|| corrupt(format!("unknown payment state {payment:?}")))?,
        };
        Ok((order, state))
    }
}

/// The column of `orders` an operator's [`OrderFilter`] compares, and the value it looks for
/// (both backends name their columns alike); `None` when it takes every order.
fn filter_column(filter: OrderFilter) -> Option<(&'static str, &'static str)> {
    match filter {
        OrderFilter::Any => None,
        OrderFilter::Status(status) => Some(("status", status.as_str())),
        OrderFilter::RefundRequired => {
            Some(("payment_state", PaymentState::RefundRequired.as_str()))
        }
    }
}

/// The `WHERE` condition of an operator's order listing, with the filter's value as the first
/// parameter (`placeholder`) and the id range as the next two: a filter that takes every
/// order compares the parameter with NULL, so both forms bind the same parameters.
pub(crate) fn filter_condition(
    filter: OrderFilter,
    placeholder: &str,
) -> (String, Option<&'static str>) {
    match filter_column(filter) {
        Some((column, value)) => (format!("{column} = {placeholder}"), Some(value)),
        None => (format!("{placeholder} IS NULL"), None),
    }
}

fn order_status(text: &str) -> Result<OrderStatus, StoreError> {
    OrderStatus::parse(text).ok_or_else(|| corrupt(format!("unknown status {text:?}")))
}

/// A deal's columns, with its members as (customer, order, joined at) in joining order.
pub(crate) struct DealColumns {
    pub id: DealId,
    pub sku: String,
    pub deal_price_minor: i64,
    pub group_size: i64,
    pub created_at: i64,
    pub expires_at: i64,
    pub status: String,
    pub members: Vec<(String, OrderId, i64)>,
}

impl DealColumns {
    /// The deal.
    pub(crate) fn decode(self) -> Result<Deal, StoreError> {
        let members = self
            .members
            .into_iter()
            .map(|(customer, order_id, joined)| {
                Ok(DealMember {
                    customer_id: CustomerId::parse(customer).map_err(corrupt)?,
                    order_id,
                    joined_at: UnixMillis(joined),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let status = &self.status;
        Ok(Deal {
            id: self.id,
            sku: Sku::parse(self.sku).map_err(corrupt)?,
            deal_price: Money::from_minor(self.deal_price_minor)
                .ok_or_else(|| corrupt("deal price out of range"))?,
            group_size: GroupSize::parse(self.group_size).map_err(corrupt)?,
            created_at: UnixMillis(self.created_at),
            expires_at: UnixMillis(self.expires_at),
            status: DealStatus::parse(status)
                .ok_or_else(|| corrupt(format!("unknown deal status {status:?}")))?,
            members,
        })
    }
}

/// A report's columns, as both backends store them (`reports`).
pub(crate) struct ReportColumns {
    pub id: uuid::Uuid,
    pub kind: String,
    pub format: String,
    pub range_from: i64,
    pub range_to: i64,
    pub status_filter: Option<String>,
    pub sku_filter: Option<String>,
    pub status: String,
    pub rows_done: i64,
    pub rows_estimated: Option<i64>,
    pub error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub size_bytes: Option<i64>,
}

/// The column list both backends select, in [`ReportColumns`]' order.
pub(crate) const REPORT_COLUMNS: &str = "id, kind, format, range_from, range_to, status_filter, \
    sku_filter, status, rows_done, rows_estimated, error, created_at, finished_at, expires_at, \
    size_bytes";

impl ReportColumns {
    /// The report, its values checked as a new request's would be.
    pub(crate) fn into_report(self) -> Result<ordermill_core::report::Report, StoreError> {
        use ordermill_core::report::{
            Report, ReportFormat, ReportId, ReportKind, ReportSpec, ReportStatus,
        };
        let kind = ReportKind::parse(&self.kind)
            .ok_or_else(|| corrupt(format!("unknown report kind {:?}", self.kind)))?;
        let format = ReportFormat::parse(&self.format)
            .ok_or_else(|| corrupt(format!("unknown report format {:?}", self.format)))?;
        let status_filter = self.status_filter.as_deref().map(order_status).transpose()?;
        let sku_filter = self.sku_filter.map(Sku::parse).transpose().map_err(corrupt)?;
        let spec = ReportSpec::new(
            kind,
            format,
            (UnixMillis(self.range_from), UnixMillis(self.range_to)),
            status_filter,
            sku_filter,
        )
        .map_err(corrupt)?;
        let count = |n: i64| u64::try_from(n).map_err(|_| corrupt(format!("negative count {n}")));
        Ok(Report {
            id: ReportId::from_uuid(self.id),
            spec,
            status: ReportStatus::parse(&self.status)
                .ok_or_else(|| corrupt(format!("unknown report status {:?}", self.status)))?,
            rows_done: count(self.rows_done)?,
            rows_estimated: self.rows_estimated.map(count).transpose()?,
            error: self.error,
            created_at: UnixMillis(self.created_at),
            finished_at: self.finished_at.map(UnixMillis),
            expires_at: self.expires_at.map(UnixMillis),
            size_bytes: self.size_bytes.map(count).transpose()?,
        })
    }
}

/// A count for an `INTEGER`/`bigint` column (reports never come near `i64::MAX`).
pub(crate) fn stored_count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The id range `[low, high)` of orders created in `[from, to)` (ids are UUIDv7): the same
/// bounds an operator's listing scans ([`ordermill_core::ports::OrderQuery::id_range`]).
pub(crate) fn id_bounds(from: UnixMillis, to: UnixMillis) -> (uuid::Uuid, uuid::Uuid) {
    ordermill_core::ports::OrderQuery {
        filter: OrderFilter::Any,
        since: from,
        until: UnixMillis(to.0.saturating_sub(1)),
        before: None,
        limit: 0,
    }
    .id_range()
}

/// The id range `[low, high)` of deals created in `[from, to)` and older than `before`.
pub(crate) fn deal_bounds(
    (from, to): (UnixMillis, UnixMillis),
    before: Option<DealId>,
) -> (uuid::Uuid, uuid::Uuid) {
    let (low, high) = id_bounds(from, to);
    (low, before.map_or(high, |b| b.as_uuid().min(high)))
}
