//! Reports (报表): what a merchant asks for, validated once here; a report's life (queued →
//! running → done or failed); and the rows each kind produces, as typed cells that every file
//! format writes the same way (the files themselves are written in the server).
//!
//! A report reads the store in pages, so nothing here holds more than one page of orders,
//! except `sales_by_sku`, which keeps one running total per SKU (bounded by the catalog).

use std::collections::BTreeMap;
use std::fmt;

use uuid::Uuid;

use crate::clock::UnixMillis;
use crate::error::ValidationError;
use crate::money::Money;
use crate::order::{Order, OrderStatus};
use crate::sku::Sku;

/// The longest range one report covers.
pub const MAX_RANGE_MS: i64 = 400 * 86_400_000;

/// What a report lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportKind {
    /// Units, orders and revenue per SKU, over confirmed orders.
    SalesBySku,
    /// One row per order, any status (or the one filtered on).
    Orders,
    /// One row per group-buy deal.
    Deals,
    /// One row per payment outcome.
    Payments,
}

impl ReportKind {
    /// Every kind, in the order the API documents them.
    pub const ALL: [ReportKind; 4] =
        [ReportKind::SalesBySku, ReportKind::Orders, ReportKind::Deals, ReportKind::Payments];

    /// The name clients send.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::SalesBySku => "sales_by_sku",
            ReportKind::Orders => "orders",
            ReportKind::Deals => "deals",
            ReportKind::Payments => "payments",
        }
    }

    /// The kind named `text`.
    pub fn parse(text: &str) -> Option<ReportKind> {
        ReportKind::ALL.into_iter().find(|k| k.as_str() == text)
    }

    /// The header row of this kind's file.
    pub fn columns(self) -> &'static [&'static str] {
        match self {
            ReportKind::SalesBySku => &["sku", "units", "orders", "revenue"],
            ReportKind::Orders => {
                &["order_id", "created_at", "customer_id", "status", "items", "units", "total"]
            }
            ReportKind::Deals => &[
                "deal_id",
                "created_at",
                "sku",
                "deal_price",
                "group_size",
                "members",
                "status",
                "expires_at",
            ],
            ReportKind::Payments => &["order_id", "created_at", "customer_id", "amount", "outcome"],
        }
    }
}

/// The file a report is written as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportFormat {
    /// RFC 4180, UTF-8, a header row; amounts as exact decimals.
    Csv,
    /// Excel: numeric cells for counts and amounts, text kept as it is.
    Xlsx,
}

impl ReportFormat {
    /// The name clients send, and the file's extension.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportFormat::Csv => "csv",
            ReportFormat::Xlsx => "xlsx",
        }
    }

    /// The format named `text`.
    pub fn parse(text: &str) -> Option<ReportFormat> {
        [ReportFormat::Csv, ReportFormat::Xlsx].into_iter().find(|f| f.as_str() == text)
    }

    /// The download's `Content-Type`.
    pub fn content_type(self) -> &'static str {
        match self {
            ReportFormat::Csv => "text/csv; charset=utf-8",
            ReportFormat::Xlsx => {
                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
            }
        }
    }
}

/// Where a report is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReportStatus {
    /// Accepted, waiting for a worker.
    Queued,
    /// A worker is writing it.
    Running,
    /// The file is ready until `expires_at`.
    Done,
    /// It could not be written; `error` says why.
    Failed,
}

impl ReportStatus {
    /// The name clients see and the stores keep.
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Queued => "queued",
            ReportStatus::Running => "running",
            ReportStatus::Done => "done",
            ReportStatus::Failed => "failed",
        }
    }

    /// Whether the report is finished for good (done or failed).
    pub fn is_final(self) -> bool {
        matches!(self, ReportStatus::Done | ReportStatus::Failed)
    }

    /// The status named `text`.
    pub fn parse(text: &str) -> Option<ReportStatus> {
        [ReportStatus::Queued, ReportStatus::Running, ReportStatus::Done, ReportStatus::Failed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A report's id: a UUIDv7, so reports list in the order they were asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct ReportId(Uuid);

impl ReportId {
    /// Parses the text form.
    ///
    /// # Errors
    /// [`ValidationError::InvalidReportId`] when it is not a UUID.
    pub fn parse(text: &str) -> Result<ReportId, ValidationError> {
        Uuid::try_parse(text)
            .map(ReportId)
            .map_err(|_| ValidationError::InvalidReportId(text.chars().take(80).collect()))
    }

    /// Wraps a UUID (a fresh one from the id generator, or one read back from storage).
    pub fn from_uuid(uuid: Uuid) -> ReportId {
        ReportId(uuid)
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for ReportId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a report covers: validated, so a worker never meets a request it cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportSpec {
    /// What it lists.
    pub kind: ReportKind,
    /// The file it is written as.
    pub format: ReportFormat,
    /// Orders (or deals) created at or after.
    pub from: UnixMillis,
    /// Created before.
    pub to: UnixMillis,
    /// `orders`, `payments`: only this status.
    pub status: Option<OrderStatus>,
    /// `orders`, `sales_by_sku`, `deals`: only this SKU.
    pub sku: Option<Sku>,
}

impl ReportSpec {
    /// Checks the range: `from` before `to`, at most [`MAX_RANGE_MS`] apart, and a status
    /// filter only where the kind has statuses to filter.
    ///
    /// # Errors
    /// [`ValidationError::InvalidReportRange`] or [`ValidationError::InvalidReportFilter`].
    pub fn new(
        kind: ReportKind,
        format: ReportFormat,
        (from, to): (UnixMillis, UnixMillis),
        status: Option<OrderStatus>,
        sku: Option<Sku>,
    ) -> Result<ReportSpec, ValidationError> {
        if from.0 >= to.0 {
            return Err(ValidationError::InvalidReportRange("from must be before to".into()));
        }
        if to.0.saturating_sub(from.0) > MAX_RANGE_MS {
            return Err(ValidationError::InvalidReportRange(
                "a report covers at most 400 days; ask for several".into(),
            ));
        }
        if status.is_some() && matches!(kind, ReportKind::SalesBySku | ReportKind::Deals) {
            return Err(ValidationError::InvalidReportFilter(format!(
                "{} reports take no status filter ({} counts confirmed orders; deals have their own states)",
                kind.as_str(),
                ReportKind::SalesBySku.as_str()
            )));
        }
        if sku.is_some() && kind == ReportKind::Payments {
            return Err(ValidationError::InvalidReportFilter(
                "payments reports take no sku filter".into(),
            ));
        }
        Ok(ReportSpec { kind, format, from, to, status, sku })
    }

    /// The file's name, e.g. `orders-20261101-20261201.csv`.
    pub fn file_name(&self, id: ReportId) -> String {
        let day = |t: UnixMillis| {
            let text = t.to_string();
            text.get(..10).unwrap_or("").replace('-', "")
        };
        let short = id.to_string();
        format!(
            "{}-{}-{}-{}.{}",
            self.kind.as_str(),
            day(self.from),
            day(self.to),
            short.get(short.len().saturating_sub(8)..).unwrap_or(&short),
            self.format.as_str()
        )
    }
}

/// A report as its status page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Its id.
    pub id: ReportId,
    /// What it covers.
    pub spec: ReportSpec,
    /// Where it is.
    pub status: ReportStatus,
    /// Rows written so far (all of them once done).
    pub rows_done: u64,
    /// Rows expected, counted when the worker starts (`None` before).
    pub rows_estimated: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// When it was asked for.
    pub created_at: UnixMillis,
    /// When it was done or failed.
    pub finished_at: Option<UnixMillis>,
    /// When its file is removed (set once done).
    pub expires_at: Option<UnixMillis>,
    /// The file's size, once done.
    pub size_bytes: Option<u64>,
}

impl Report {
    /// A report just asked for.
    pub fn queued(id: ReportId, spec: ReportSpec, now: UnixMillis) -> Report {
        Report {
            id,
            spec,
            status: ReportStatus::Queued,
            rows_done: 0,
            rows_estimated: None,
            error: None,
            created_at: now,
            finished_at: None,
            expires_at: None,
            size_bytes: None,
        }
    }

    /// How far along, 0 to 100: 100 once done, never 100 before (an estimate can be short).
    pub fn percent(&self) -> u8 {
        match (self.status, self.rows_estimated) {
            (ReportStatus::Done, _) => 100,
            (_, Some(estimate)) if estimate > 0 => {
                let share = self.rows_done.saturating_mul(100) / estimate;
                u8::try_from(share.min(99)).unwrap_or(99)
            }
            _ => 0,
        }
    }
}

/// One cell of a report row. Amounts stay exact: CSV prints them as decimals, XLSX as numbers
/// with two decimals (its cells are floating point; an amount in cents below 2⁵³ prints back
/// exactly).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    /// Text as it is (Chinese names included).
    Text(String),
    /// A count.
    Count(u64),
    /// An amount in minor units (a report's sums may pass [`Money::MAX`]).
    Amount(i128),
    /// An instant, RFC 3339 in UTC.
    Time(UnixMillis),
}

impl Cell {
    /// The amount of `money`.
    pub fn money(money: Money) -> Cell {
        Cell::Amount(i128::from(money.minor()))
    }
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cell::Text(text) => f.write_str(text),
            Cell::Count(n) => write!(f, "{n}"),
            Cell::Amount(minor) => {
                let sign = if *minor < 0 { "-" } else { "" };
                let abs = minor.unsigned_abs();
                write!(f, "{sign}{}.{:02}", abs / 100, abs % 100)
            }
            Cell::Time(at) => write!(f, "{at}"),
        }
    }
}

/// Whether `order` belongs in a report of `spec` (its range and filters).
pub fn includes(spec: &ReportSpec, order: &Order) -> bool {
    order.created_at.0 >= spec.from.0
        && order.created_at.0 < spec.to.0
        && spec.status.is_none_or(|s| order.status == s)
        && spec.sku.as_ref().is_none_or(|sku| order.lines.iter().any(|l| &l.sku == sku))
}

/// An `orders` report's row.
pub fn order_row(order: &Order) -> Vec<Cell> {
    let items = order
        .lines
        .iter()
        .map(|l| format!("{}×{}", l.sku, l.quantity.get()))
        .collect::<Vec<_>>()
        .join(" ");
    let units: u64 = order.lines.iter().map(|l| u64::from(l.quantity.get())).sum();
    vec![
        Cell::Text(order.id.to_string()),
        Cell::Time(order.created_at),
        Cell::Text(order.customer_id.as_str().to_owned()),
        Cell::Text(order.status.as_str().to_owned()),
        Cell::Text(items),
        Cell::Count(units),
        Cell::money(order.total),
    ]
}

/// A `deals` report's row.
pub fn deal_row(deal: &crate::deal::Deal) -> Vec<Cell> {
    vec![
        Cell::Text(deal.id.to_string()),
        Cell::Time(deal.created_at),
        Cell::Text(deal.sku.to_string()),
        Cell::money(deal.deal_price),
        Cell::Count(u64::from(deal.group_size.get())),
        Cell::Count(deal.members.len() as u64),
        Cell::Text(deal.status.as_str().to_owned()),
        Cell::Time(deal.expires_at),
    ]
}

/// What became of an order's money, as a `payments` report says it.
pub fn payment_outcome(order: &Order) -> &'static str {
    let refund =
        order.history.iter().any(|c| c.note == Some(crate::order::HistoryNote::RefundRequired));
    match order.status {
        OrderStatus::Confirmed => "paid",
        OrderStatus::Cancelled if refund => "refund_required",
        OrderStatus::Cancelled => "not_paid",
        OrderStatus::Accepted | OrderStatus::AwaitingPayment | OrderStatus::AwaitingGroup => {
            "pending"
        }
    }
}

/// A `payments` report's row.
pub fn payment_row(order: &Order) -> Vec<Cell> {
    vec![
        Cell::Text(order.id.to_string()),
        Cell::Time(order.created_at),
        Cell::Text(order.customer_id.as_str().to_owned()),
        Cell::money(order.total),
        Cell::Text(payment_outcome(order).to_owned()),
    ]
}

/// `sales_by_sku`'s running totals: one entry per SKU sold, whatever the number of orders.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SalesBySku {
    per_sku: BTreeMap<Sku, SkuSales>,
}

/// One SKU's sales.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SkuSales {
    /// Units sold.
    pub units: u64,
    /// Orders holding the SKU.
    pub orders: u64,
    /// Sum of the line totals, minor units.
    pub revenue: i128,
}

impl SalesBySku {
    /// Counts `order`'s lines (of `only`, when given). Only confirmed orders are sales.
    pub fn add(&mut self, order: &Order, only: Option<&Sku>) {
        if order.status != OrderStatus::Confirmed {
            return;
        }
        for line in &order.lines {
            if only.is_some_and(|sku| sku != &line.sku) {
                continue;
            }
            let sales = self.per_sku.entry(line.sku.clone()).or_default();
            sales.units += u64::from(line.quantity.get());
            sales.orders += 1;
            sales.revenue += i128::from(line.line_total.minor());
        }
    }

    /// One SKU's totals.
    pub fn get(&self, sku: &Sku) -> Option<SkuSales> {
        self.per_sku.get(sku).copied()
    }

    /// The rows, by SKU.
    pub fn rows(&self) -> impl Iterator<Item = Vec<Cell>> + '_ {
        self.per_sku.iter().map(|(sku, s)| {
            vec![
                Cell::Text(sku.to_string()),
                Cell::Count(s.units),
                Cell::Count(s.orders),
                Cell::Amount(s.revenue),
            ]
        })
    }

    /// How many rows.
    pub fn len(&self) -> usize {
        self.per_sku.len()
    }

    /// Whether nothing was sold.
    pub fn is_empty(&self) -> bool {
        self.per_sku.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::customer::CustomerId;
    use crate::order::OrderLine;
    use crate::order_id::OrderIdGenerator;
    use crate::quantity::Quantity;

    const DAY: i64 = 86_400_000;

    fn order(status: OrderStatus, at: i64, lines: &[(&str, u32, &str)]) -> Order {
        let lines: Vec<OrderLine> = lines
            .iter()
            .map(|(sku, qty, price)| {
                OrderLine::priced(
                    Sku::parse(*sku).unwrap(),
                    Quantity::parse(i64::from(*qty)).unwrap(),
                    Money::parse("price", price).unwrap(),
                )
                .unwrap()
            })
            .collect();
        let total = lines.iter().fold(Money::ZERO, |t, l| t.checked_add(l.line_total).unwrap());
        Order {
            id: OrderIdGenerator::new().next(UnixMillis(at)),
            customer_id: CustomerId::parse("顾客-1").unwrap(),
            lines,
            total,
            status,
            created_at: UnixMillis(at),
            idempotency_key: None,
            history: Vec::new(),
            awaited_payment: None,
        }
    }

    fn spec(kind: ReportKind) -> ReportSpec {
        ReportSpec::new(kind, ReportFormat::Csv, (UnixMillis(0), UnixMillis(10 * DAY)), None, None)
            .unwrap()
    }

    #[test]
    fn names_round_trip() {
        for kind in ReportKind::ALL {
            assert_eq!(ReportKind::parse(kind.as_str()), Some(kind));
        }
        assert_eq!(ReportKind::parse("everything"), None);
        assert_eq!(ReportFormat::parse("xlsx"), Some(ReportFormat::Xlsx));
        assert_eq!(ReportFormat::parse("pdf"), None);
        for status in ["queued", "running", "done", "failed"] {
            assert_eq!(ReportStatus::parse(status).map(ReportStatus::as_str), Some(status));
        }
    }

    #[test]
    fn ranges_and_filters_are_checked() {
        let range = |from, to| {
            ReportSpec::new(
                ReportKind::Orders,
                ReportFormat::Csv,
                (UnixMillis(from), UnixMillis(to)),
                None,
                None,
            )
        };
        assert!(range(0, DAY).is_ok());
        assert_eq!(range(DAY, DAY).unwrap_err().code(), "invalid_report_range");
        assert_eq!(range(DAY, 0).unwrap_err().code(), "invalid_report_range");
        assert_eq!(range(0, MAX_RANGE_MS + 1).unwrap_err().code(), "invalid_report_range");
        let filtered = ReportSpec::new(
            ReportKind::SalesBySku,
            ReportFormat::Csv,
            (UnixMillis(0), UnixMillis(DAY)),
            Some(OrderStatus::Cancelled),
            None,
        );
        assert_eq!(filtered.unwrap_err().code(), "invalid_report_filter");
    }

    #[test]
    fn sales_count_confirmed_orders_only_per_sku() {
        let mut sales = SalesBySku::default();
        sales.add(
            &order(OrderStatus::Confirmed, DAY, &[("crab", 2, "19.99"), ("tea", 1, "5")]),
            None,
        );
        sales.add(&order(OrderStatus::Confirmed, DAY, &[("crab", 1, "9.90")]), None);
        sales.add(&order(OrderStatus::Cancelled, DAY, &[("crab", 5, "19.99")]), None);
        sales.add(&order(OrderStatus::Accepted, DAY, &[("crab", 5, "19.99")]), None);
        let crab = sales.get(&Sku::parse("crab").unwrap()).unwrap();
        assert_eq!((crab.units, crab.orders, crab.revenue), (3, 2, 4988));
        let rows: Vec<String> = sales
            .rows()
            .map(|r| r.iter().map(Cell::to_string).collect::<Vec<_>>().join(","))
            .collect();
        assert_eq!(rows, ["crab,3,2,49.88", "tea,1,1,5.00"]);
        let mut only_tea = SalesBySku::default();
        only_tea.add(
            &order(OrderStatus::Confirmed, DAY, &[("crab", 2, "19.99"), ("tea", 1, "5")]),
            Some(&Sku::parse("tea").unwrap()),
        );
        assert_eq!(only_tea.len(), 1);
    }

    #[test]
    fn sums_past_the_largest_price_stay_exact() {
        let big = Cell::Amount(i128::from(Money::MAX.minor()) * 3 + 1);
        assert_eq!(big.to_string(), "2999999999.98");
        assert_eq!(Cell::Amount(-5).to_string(), "-0.05");
    }

    #[test]
    fn an_order_row_and_the_range_it_belongs_to() {
        let o = order(OrderStatus::Confirmed, 2 * DAY, &[("crab", 2, "19.99"), ("tea", 1, "5")]);
        let row: Vec<String> = order_row(&o).iter().map(Cell::to_string).collect();
        assert_eq!(row[2..].to_vec(), ["顾客-1", "confirmed", "crab×2 tea×1", "3", "44.98"]);
        assert_eq!(row.len(), ReportKind::Orders.columns().len());
        assert!(includes(&spec(ReportKind::Orders), &o));
        let later = ReportSpec { from: UnixMillis(3 * DAY), ..spec(ReportKind::Orders) };
        assert!(!includes(&later, &o));
        let other_sku =
            ReportSpec { sku: Some(Sku::parse("rice").unwrap()), ..spec(ReportKind::Orders) };
        assert!(!includes(&other_sku, &o));
    }

    #[test]
    fn a_payment_row_says_what_became_of_the_money() {
        let paid = order(OrderStatus::Confirmed, DAY, &[("crab", 1, "19.99")]);
        assert_eq!(payment_outcome(&paid), "paid");
        let row: Vec<String> = payment_row(&paid).iter().map(Cell::to_string).collect();
        assert_eq!(row[2..].to_vec(), ["顾客-1", "19.99", "paid"]);
        assert_eq!(row.len(), ReportKind::Payments.columns().len());
        assert_eq!(
            payment_outcome(&order(OrderStatus::Cancelled, DAY, &[("crab", 1, "1")])),
            "not_paid"
        );
        assert_eq!(
            payment_outcome(&order(OrderStatus::AwaitingPayment, DAY, &[("crab", 1, "1")])),
            "pending"
        );
        let mut late = order(OrderStatus::Cancelled, DAY, &[("crab", 1, "1")]);
        late.history.push(crate::order::StatusChange {
            status: OrderStatus::Cancelled,
            at: UnixMillis(DAY + 1),
            note: Some(crate::order::HistoryNote::RefundRequired),
        });
        assert_eq!(payment_outcome(&late), "refund_required");
    }

    #[test]
    fn progress_never_claims_done_early() {
        let mut report = Report::queued(
            ReportId::from_uuid(Uuid::nil()),
            spec(ReportKind::Orders),
            UnixMillis(0),
        );
        assert_eq!(report.percent(), 0);
        report.status = ReportStatus::Running;
        report.rows_estimated = Some(200);
        report.rows_done = 50;
        assert_eq!(report.percent(), 25);
        report.rows_done = 260;
        assert_eq!(report.percent(), 99, "the estimate was short");
        report.status = ReportStatus::Done;
        assert_eq!(report.percent(), 100);
        assert_eq!(
            spec(ReportKind::Orders).file_name(report.id),
            "orders-19700101-19700111-00000000.csv"
        );
    }
}
