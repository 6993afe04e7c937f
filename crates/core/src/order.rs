//! Orders: lines priced from the catalog, totals, status.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use crate::clock::UnixMillis;
use crate::customer::CustomerId;
use crate::error::ValidationError;
use crate::money::Money;
use crate::order_id::OrderId;
use crate::quantity::Quantity;
use crate::sku::Sku;

/// The most lines one order may have.
pub const MAX_ITEMS: usize = 100;

/// Where an order is in its life (see [`crate::lifecycle`] for the rules that move it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// A group-buy order: durable, stock held, waiting for its deal's group to fill before
    /// it is charged (see [`crate::deal`]).
    AwaitingGroup,
    /// Durable, stock held; inventory and payment are under way.
    Accepted,
    /// Pay-later (`payment.mode = "await_callback"`): stock held, waiting for the customer to
    /// pay through the order's payment URL before its deadline (`pay_by`).
    AwaitingPayment,
    /// Stock deducted of record and payment succeeded.
    Confirmed,
    /// Payment failed, or its deal expired; stock released.
    Cancelled,
}

impl OrderStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AwaitingGroup => "awaiting_group",
            Self::Accepted => "accepted",
            Self::AwaitingPayment => "awaiting_payment",
            Self::Confirmed => "confirmed",
            Self::Cancelled => "cancelled",
        }
    }

    /// Reads a stored status back; `None` for an unknown one.
    pub fn parse(text: &str) -> Option<OrderStatus> {
        match text {
            "awaiting_group" => Some(Self::AwaitingGroup),
            "accepted" => Some(Self::Accepted),
            "awaiting_payment" => Some(Self::AwaitingPayment),
            "confirmed" => Some(Self::Confirmed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }

    /// Whether the order can change no more.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Confirmed | Self::Cancelled)
    }
}

/// A status an order reached, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatusChange {
    /// The status reached.
    pub status: OrderStatus,
    /// When.
    pub at: UnixMillis,
    /// Something that happened to the order without changing its status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<HistoryNote>,
}

impl StatusChange {
    /// The order reached `status` at `at`.
    pub fn new(status: OrderStatus, at: UnixMillis) -> StatusChange {
        StatusChange { status, at, note: None }
    }
}

/// An entry of an order's history that is not a change of status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HistoryNote {
    /// Money arrived for an order already cancelled (a payment callback after its deadline):
    /// the order stays cancelled and the money must be given back.
    RefundRequired,
}

impl HistoryNote {
    /// The note as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RefundRequired => "refund_required",
        }
    }

    /// Reads a stored note back; `None` for an unknown one.
    pub fn parse(text: &str) -> Option<HistoryNote> {
        (text == "refund_required").then_some(Self::RefundRequired)
    }
}

/// A pay-later order's payment: where the customer pays, and by when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwaitedPayment {
    /// The deadline: unpaid then, the order is cancelled and its stock goes back on sale.
    pub pay_by: UnixMillis,
    /// Where the customer pays (from the gateway).
    pub payment_url: String,
}

/// One line of an order, priced at intake from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderLine {
    /// What.
    pub sku: Sku,
    /// How many.
    pub quantity: Quantity,
    /// The catalog price when the order was taken.
    pub unit_price: Money,
    /// `unit_price × quantity`.
    pub line_total: Money,
}

impl OrderLine {
    /// Prices a line.
    ///
    /// # Errors
    /// [`ValidationError::TotalOverflow`] if the line total would exceed [`Money::MAX`].
    pub fn priced(
        sku: Sku,
        quantity: Quantity,
        unit_price: Money,
    ) -> Result<OrderLine, ValidationError> {
        let line_total = unit_price
            .checked_mul(quantity.get())
            .ok_or(ValidationError::TotalOverflow { max: Money::MAX_TEXT })?;
        Ok(OrderLine { sku, quantity, unit_price, line_total })
    }
}

/// Checks the shape of an order's items before pricing: 1..=100 of them, no SKU twice.
///
/// # Errors
/// [`ValidationError::NoItems`], [`ValidationError::TooManyItems`] or
/// [`ValidationError::DuplicateSku`].
pub fn check_items<'a>(
    skus: impl ExactSizeIterator<Item = &'a Sku>,
) -> Result<(), ValidationError> {
    let count = skus.len();
    if count == 0 {
        return Err(ValidationError::NoItems);
    }
    if count > MAX_ITEMS {
        return Err(ValidationError::TooManyItems { got: count, max: MAX_ITEMS });
    }
    // Most orders have one or two lines; a set only pays off beyond a few.
    let mut seen: HashSet<&str> = HashSet::with_capacity(count);
    for sku in skus {
        if !seen.insert(sku.as_str()) {
            return Err(ValidationError::DuplicateSku(sku.to_string()));
        }
    }
    Ok(())
}

/// Units per SKU over `orders`' lines, in SKU order: what a commit adds to each product's
/// `reserved` count (one row update per SKU, locked in the same order by every writer).
pub fn units_by_sku<'a>(orders: impl IntoIterator<Item = &'a Order>) -> BTreeMap<&'a str, i64> {
    let mut units: BTreeMap<&str, i64> = BTreeMap::new();
    for line in orders.into_iter().flat_map(|o| &o.lines) {
        *units.entry(line.sku.as_str()).or_default() += i64::from(line.quantity.get());
    }
    units
}

/// Sums line totals.
///
/// # Errors
/// [`ValidationError::TotalOverflow`] if the sum would not fit.
pub fn total_of(lines: &[OrderLine]) -> Result<Money, ValidationError> {
    lines
        .iter()
        .try_fold(Money::ZERO, |sum, line| sum.checked_add(line.line_total))
        .ok_or(ValidationError::TotalOverflow { max: Money::MAX_TEXT })
}

/// An `Idempotency-Key` header value: 1 to 255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Validates a key.
    ///
    /// # Errors
    /// [`ValidationError::InvalidIdempotencyKey`] when empty, too long or not printable ASCII.
    pub fn parse(text: &str) -> Result<IdempotencyKey, ValidationError> {
        let ok = (1..=255).contains(&text.len()) && text.bytes().all(|b| (0x20..0x7f).contains(&b));
        if ok {
            Ok(IdempotencyKey(text.to_owned()))
        } else {
            Err(ValidationError::InvalidIdempotencyKey)
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An order as accepted and stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Time-ordered id.
    pub id: OrderId,
    /// Who ordered.
    pub customer_id: CustomerId,
    /// Priced lines, in the order the client sent them.
    pub lines: Vec<OrderLine>,
    /// Sum of the line totals.
    pub total: Money,
    /// Where the order is in its life.
    pub status: OrderStatus,
    /// When intake accepted it.
    pub created_at: UnixMillis,
    /// The client's idempotency key, if it sent one.
    pub idempotency_key: Option<IdempotencyKey>,
    /// Statuses reached after the first one, oldest first. The first is `Accepted` at
    /// `created_at` and not stored, except for a group-buy order, whose history starts with
    /// its own `AwaitingGroup` entry (see [`Order::full_history`]).
    pub history: Vec<StatusChange>,
    /// A pay-later order's payment URL and deadline, once the gateway gave one (boxed: most
    /// orders have none, and an order travels in every effect outcome).
    pub awaited_payment: Option<Box<AwaitedPayment>>,
}

/// How an order's payment deadline is watched after a change ([`Order::deadline_change`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeadlineChange {
    /// The order started awaiting payment: watch this deadline.
    Watch(UnixMillis),
    /// The order stopped awaiting payment (paid, failed, expired, cancelled): forget it.
    Forget,
}

impl Order {
    /// Whether the store starts or stops watching this order's payment deadline, now that its
    /// status moved from `was`: only an order awaiting payment has one to watch.
    pub fn deadline_change(&self, was: OrderStatus) -> Option<DeadlineChange> {
        let awaiting = |status| status == OrderStatus::AwaitingPayment;
        match (awaiting(was), awaiting(self.status), &self.awaited_payment) {
            (false, true, Some(awaited)) => Some(DeadlineChange::Watch(awaited.pay_by)),
            (true, false, _) => Some(DeadlineChange::Forget),
            _ => None,
        }
    }

    /// Every status the order went through, starting with its first: `Accepted` at
    /// `created_at`, or the `AwaitingGroup` entry a group-buy order stores itself.
    pub fn full_history(&self) -> Vec<StatusChange> {
        if self.history.first().is_some_and(|c| c.status == OrderStatus::AwaitingGroup) {
            return self.history.clone();
        }
        let mut all = Vec::with_capacity(self.history.len() + 1);
        all.push(StatusChange::new(OrderStatus::Accepted, self.created_at));
        all.extend_from_slice(&self.history);
        all
    }

    /// Whether `customer_id` and `(sku, quantity)` lines are those of this order: the test for
    /// "same idempotency key, same request".
    pub fn same_request(&self, customer_id: &CustomerId, items: &[(Sku, Quantity)]) -> bool {
        self.customer_id == *customer_id
            && self.lines.len() == items.len()
            && self
                .lines
                .iter()
                .zip(items)
                .all(|(line, (sku, qty))| line.sku == *sku && line.quantity == *qty)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sku(s: &str) -> Sku {
        Sku::parse(s).unwrap()
    }

    #[test]
    fn item_shape_rules() {
        assert_eq!(check_items([].iter()).unwrap_err().code(), "no_items");
        let many: Vec<Sku> = (0..101).map(|i| sku(&format!("s{i}"))).collect();
        assert_eq!(check_items(many.iter()).unwrap_err().code(), "too_many_items");
        assert!(check_items(many[..100].iter()).is_ok());
        let dup = [sku("a"), sku("b"), sku("a")];
        assert_eq!(check_items(dup.iter()).unwrap_err().code(), "duplicate_sku");
    }

    #[test]
    fn total_is_the_sum_of_price_times_quantity() {
        let lines = [
            OrderLine::priced(
                sku("a"),
                Quantity::parse(2).unwrap(),
                Money::parse("p", "19.99").unwrap(),
            )
            .unwrap(),
            OrderLine::priced(
                sku("b"),
                Quantity::parse(3).unwrap(),
                Money::parse("p", "0.10").unwrap(),
            )
            .unwrap(),
        ];
        assert_eq!(lines[0].line_total.to_string(), "39.98");
        assert_eq!(total_of(&lines).unwrap().to_string(), "40.28");
    }

    #[test]
    fn units_are_summed_per_sku_over_every_order_in_sku_order() {
        let order = |lines: &[(&str, i64)]| Order {
            id: crate::OrderIdGenerator::new().next(UnixMillis(1)),
            customer_id: CustomerId::parse("c").unwrap(),
            total: Money::ZERO,
            lines: lines
                .iter()
                .map(|(s, q)| OrderLine::priced(sku(s), Quantity::parse(*q).unwrap(), Money::ZERO))
                .collect::<Result<_, _>>()
                .unwrap(),
            status: OrderStatus::Accepted,
            created_at: UnixMillis(1),
            idempotency_key: None,
            history: Vec::new(),
            awaited_payment: None,
        };
        let batch = [order(&[("b", 2), ("a", 1)]), order(&[("b", 3)])];
        let units: Vec<(&str, i64)> = units_by_sku(&batch).into_iter().collect();
        assert_eq!(units, vec![("a", 1), ("b", 5)]);
    }

    #[test]
    fn a_deadline_is_watched_only_while_the_order_awaits_payment() {
        let mut order = Order {
            id: crate::OrderIdGenerator::new().next(UnixMillis(1)),
            customer_id: CustomerId::parse("c").unwrap(),
            total: Money::ZERO,
            lines: Vec::new(),
            status: OrderStatus::AwaitingPayment,
            created_at: UnixMillis(1),
            idempotency_key: None,
            history: Vec::new(),
            awaited_payment: Some(Box::new(AwaitedPayment {
                pay_by: UnixMillis(900),
                payment_url: "https://pay.example/1".into(),
            })),
        };
        let from = |was| order.deadline_change(was);
        assert_eq!(from(OrderStatus::Accepted), Some(DeadlineChange::Watch(UnixMillis(900))));
        assert_eq!(from(OrderStatus::AwaitingPayment), None, "still waiting: nothing changes");
        order.status = OrderStatus::Cancelled;
        assert_eq!(
            order.deadline_change(OrderStatus::AwaitingPayment),
            Some(DeadlineChange::Forget)
        );
        assert_eq!(order.deadline_change(OrderStatus::Accepted), None, "never watched");
    }

    #[test]
    fn idempotency_keys_are_printable_ascii() {
        assert!(IdempotencyKey::parse("order-2026-11-22-0001").is_ok());
        for bad in ["", "ü", "a\tb", &"k".repeat(256)] {
            assert_eq!(IdempotencyKey::parse(bad).unwrap_err().code(), "invalid_idempotency_key");
        }
    }

    #[test]
    fn a_total_above_the_money_bound_is_refused_not_accepted_and_stuck() {
        // 100000.00 x 10000 = 1,000,000,000.00: once accepted and then unparseable by payment.
        let price = Money::parse("price", "100000.00").unwrap();
        let err = OrderLine::priced(sku("a"), Quantity::parse(10_000).unwrap(), price).unwrap_err();
        assert_eq!(err.code(), "amount_too_large");
        let half = Money::from_minor(Money::MAX.minor() / 2 + 1).unwrap();
        let line = OrderLine::priced(sku("a"), Quantity::parse(1).unwrap(), half).unwrap();
        assert_eq!(total_of(&[line.clone(), line]).unwrap_err().code(), "amount_too_large");
        let exact = OrderLine::priced(sku("a"), Quantity::parse(1).unwrap(), Money::MAX).unwrap();
        assert_eq!(total_of(&[exact]).unwrap(), Money::MAX);
    }

    proptest! {
        #[test]
        fn total_is_the_integer_sum_or_refused_above_the_bound(items in proptest::collection::vec((0i64..=Money::MAX.minor() / 100_000, 1u32..=Quantity::MAX), 1..=MAX_ITEMS)) {
            let expected: i128 = items.iter().map(|(p, q)| i128::from(*p) * i128::from(*q)).sum();
            let lines: Result<Vec<OrderLine>, ValidationError> = items.iter().enumerate().map(|(i, (price, qty))| {
                OrderLine::priced(sku(&format!("s{i}")), Quantity::parse(i64::from(*qty)).unwrap(), Money::from_minor(*price).unwrap())
            }).collect();
            let total = lines.and_then(|lines| total_of(&lines));
            if expected <= i128::from(Money::MAX.minor()) {
                prop_assert_eq!(i128::from(total.unwrap().minor()), expected);
            } else {
                prop_assert_eq!(total.unwrap_err().code(), "amount_too_large");
            }
        }
    }
}
