//! The order state machine. Pure: the store loads an order's [`Lifecycle`], applies a
//! [`Fact`] learned by a consumer, and writes back what the [`Transition`] says, in one
//! transaction with the consumer's "processed" record.
//!
//! ```text
//! accepted ──(stock deducted AND payment succeeded, in either order)──► confirmed
//! accepted ──(payment failed)──► cancelled ──(inventory releases the stock)
//! awaiting_group ──(group completed)──► accepted ──► (as above)
//! awaiting_group ──(group expired)──► cancelled ──(inventory releases the stock)
//!
//! pay later (payment.mode = "await_callback"):
//! accepted ──(payment requested: a URL and a deadline)──► awaiting_payment
//! awaiting_payment ──(paid)──► accepted / confirmed (as above)
//! awaiting_payment ──(failed, or the deadline passed)──► cancelled ──(stock released)
//! cancelled ──(paid after all)──► cancelled, payment refund_required
//! ```
//!
//! Payment facts apply only to an accepted (or awaiting-payment) order: a group-buy order is
//! charged once its group is complete (payment is bound to `deal.completed`), and a cancelled
//! one never — money that arrives for one anyway is recorded as owed back.

use crate::event::RoutingKey;
use crate::order::OrderStatus;

/// Where an order's stock is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StockState {
    /// Counted in the product's `reserved`; not yet taken from stock of record.
    Held,
    /// Taken from stock of record (`stock -= q`, `reserved -= q`).
    Deducted,
    /// Given back (after a cancellation).
    Released,
}

/// Where an order's payment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PaymentState {
    /// Not yet charged.
    Pending,
    /// Charged.
    Succeeded,
    /// Declined, or not paid in time; never charged.
    Failed,
    /// Paid after the order was cancelled: the money must be given back.
    RefundRequired,
}

macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The value as stored.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
            /// Reads a stored value back; `None` for an unknown one.
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }
        }
    };
}
text_enum!(StockState { Held => "held", Deducted => "deducted", Released => "released" });
text_enum!(PaymentState {
    Pending => "pending",
    Succeeded => "succeeded",
    Failed => "failed",
    RefundRequired => "refund_required",
});

/// Something a consumer learned about an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact {
    /// Inventory deducted the order's units of record (on `order.created`).
    StockDeducted,
    /// Inventory gave the order's units back (on `payment.failed`).
    StockReleased,
    /// The gateway charged the order.
    PaymentSucceeded,
    /// The gateway declined the order.
    PaymentFailed,
    /// The order's deal filled its group (the deal completed).
    GroupCompleted,
    /// The order's deal reached its deadline unfilled.
    GroupExpired,
    /// Pay later: the gateway gave the order a payment URL; the customer pays there.
    PaymentRequested,
    /// Pay later: the order's payment deadline passed unpaid.
    PaymentExpired,
    /// An operator cancelled the order (one stuck in `accepted` after its payment was
    /// dead-lettered, say). Only an unpaid order that is not in a deal can be cancelled so.
    OperatorCancelled,
}

/// What to do to the product rows for a transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockAction {
    /// Nothing.
    None,
    /// `stock -= q; reserved -= q` per line.
    Deduct,
    /// `reserved -= q` per line, and give the units back to the hot-stock cache.
    ReleaseHeld,
    /// `stock += q` per line (undo a deduction), and give the units back to the cache.
    Restore,
}

/// How one product row moves: added to its `stock` and `reserved` counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StockDelta {
    /// Added to the stock of record.
    pub stock: i64,
    /// Added to the units held by accepted orders.
    pub reserved: i64,
}

impl StockDelta {
    /// Holding `units` for an accepted order (intake, a deal join).
    pub fn hold(units: i64) -> StockDelta {
        StockDelta { stock: 0, reserved: units }
    }

    /// Whether it changes nothing (so no row needs writing).
    pub fn is_zero(self) -> bool {
        self == StockDelta::default()
    }
}

impl std::ops::AddAssign for StockDelta {
    fn add_assign(&mut self, other: StockDelta) {
        self.stock += other.stock;
        self.reserved += other.reserved;
    }
}

impl StockAction {
    /// How the product row of a line of `units` moves. The one place that says what each
    /// action does to `stock` and `reserved`; stores only add the deltas up per SKU.
    pub fn delta(self, units: i64) -> StockDelta {
        match self {
            StockAction::None => StockDelta::default(),
            StockAction::Deduct => StockDelta { stock: -units, reserved: -units },
            StockAction::ReleaseHeld => StockDelta { stock: 0, reserved: -units },
            StockAction::Restore => StockDelta { stock: units, reserved: 0 },
        }
    }

    /// Whether the units come back on sale (the hot-stock cache must be given them).
    pub fn gives_back(self) -> bool {
        matches!(self, StockAction::ReleaseHeld | StockAction::Restore)
    }
}

/// An order's state as the machine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// Visible status.
    pub status: OrderStatus,
    /// Stock.
    pub stock: StockState,
    /// Payment.
    pub payment: PaymentState,
}

/// The result of applying a fact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// The state after.
    pub next: Lifecycle,
    /// What to do to stock.
    pub stock_action: StockAction,
    /// Events to publish, in order (written to the outbox in the same transaction).
    pub emit: Vec<RoutingKey>,
}

impl Transition {
    /// Whether the visible status changed.
    pub fn status_changed(&self, before: &Lifecycle) -> bool {
        self.next.status != before.status
    }
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self::new()
    }
}

impl Lifecycle {
    /// A freshly accepted order.
    pub fn new() -> Self {
        Lifecycle {
            status: OrderStatus::Accepted,
            stock: StockState::Held,
            payment: PaymentState::Pending,
        }
    }

    /// A freshly joined group-buy order.
    pub fn awaiting_group() -> Self {
        Lifecycle { status: OrderStatus::AwaitingGroup, ..Self::new() }
    }

    /// Whether an operator may cancel the order now: it is waiting (accepted or awaiting
    /// payment) and no money was taken. A confirmed order needs a refund, which ordermill does
    /// not make; a group-buy order waiting for its group belongs to its deal.
    pub fn operator_may_cancel(self) -> bool {
        matches!(self.status, OrderStatus::Accepted | OrderStatus::AwaitingPayment)
            && self.payment == PaymentState::Pending
    }

    /// Applies `fact`. A fact that no longer applies (a redelivery, or one overtaken by a
    /// cancellation) changes nothing, so every consumer is idempotent by construction.
    pub fn apply(self, fact: Fact) -> Transition {
        let mut next = self;
        let mut stock_action = StockAction::None;
        let mut emit = Vec::new();
        match fact {
            Fact::StockDeducted => {
                // A cancelled order's held units are released by inventory, not deducted.
                if self.stock == StockState::Held && self.status != OrderStatus::Cancelled {
                    next.stock = StockState::Deducted;
                    stock_action = StockAction::Deduct;
                }
            }
            // Only a cancelled order gives its units back; a stray release is ignored.
            Fact::StockReleased if self.status != OrderStatus::Cancelled => {}
            Fact::StockReleased => match self.stock {
                StockState::Held => {
                    next.stock = StockState::Released;
                    stock_action = StockAction::ReleaseHeld;
                }
                StockState::Deducted => {
                    next.stock = StockState::Released;
                    stock_action = StockAction::Restore;
                }
                StockState::Released => {}
            },
            // Money for a cancelled order (a callback that lost the race with its deadline)
            // is never taken as payment: the order stays cancelled, the money is owed back.
            Fact::PaymentSucceeded if self.status == OrderStatus::Cancelled => {
                if self.payment != PaymentState::RefundRequired {
                    next.payment = PaymentState::RefundRequired;
                    emit.push(RoutingKey::PaymentRefundRequired);
                }
            }
            // Charged only while accepted: not before its group completes (see the module
            // doc), and never once cancelled (an expired group's order was never charged).
            Fact::PaymentSucceeded | Fact::PaymentFailed
                if matches!(self.status, OrderStatus::AwaitingGroup | OrderStatus::Cancelled) => {}
            Fact::PaymentRequested => {
                if self.status == OrderStatus::Accepted && self.payment == PaymentState::Pending {
                    next.status = OrderStatus::AwaitingPayment;
                }
            }
            Fact::OperatorCancelled => {
                if self.operator_may_cancel() {
                    next.payment = PaymentState::Failed;
                    next.status = OrderStatus::Cancelled;
                    emit.push(RoutingKey::PaymentFailed);
                    emit.push(RoutingKey::OrderCancelled);
                }
            }
            Fact::PaymentExpired => {
                if self.status == OrderStatus::AwaitingPayment
                    && self.payment == PaymentState::Pending
                {
                    next.payment = PaymentState::Failed;
                    next.status = OrderStatus::Cancelled;
                    emit.push(RoutingKey::PaymentFailed);
                    emit.push(RoutingKey::OrderCancelled);
                }
            }
            Fact::GroupCompleted => {
                if self.status == OrderStatus::AwaitingGroup {
                    next.status = OrderStatus::Accepted;
                    emit.push(RoutingKey::DealCompleted);
                }
            }
            Fact::GroupExpired => {
                if self.status == OrderStatus::AwaitingGroup {
                    next.status = OrderStatus::Cancelled;
                    emit.push(RoutingKey::DealExpired);
                }
            }
            Fact::PaymentSucceeded => {
                if self.payment == PaymentState::Pending {
                    next.payment = PaymentState::Succeeded;
                    // Paid: back on the accepted path, confirmed below once stock is deducted.
                    next.status = OrderStatus::Accepted;
                    emit.push(RoutingKey::PaymentSucceeded);
                }
            }
            Fact::PaymentFailed => {
                if self.payment == PaymentState::Pending {
                    next.payment = PaymentState::Failed;
                    next.status = OrderStatus::Cancelled;
                    emit.push(RoutingKey::PaymentFailed);
                    emit.push(RoutingKey::OrderCancelled);
                }
            }
        }
        if next.status == OrderStatus::Accepted
            && next.stock == StockState::Deducted
            && next.payment == PaymentState::Succeeded
        {
            next.status = OrderStatus::Confirmed;
            emit.push(RoutingKey::OrderConfirmed);
        }
        Transition { next, stock_action, emit }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn run(facts: &[Fact]) -> (Lifecycle, Vec<StockAction>, Vec<RoutingKey>) {
        run_from(Lifecycle::new(), facts)
    }

    fn run_from(
        start: Lifecycle,
        facts: &[Fact],
    ) -> (Lifecycle, Vec<StockAction>, Vec<RoutingKey>) {
        let mut state = start;
        let mut actions = Vec::new();
        let mut events = Vec::new();
        for fact in facts {
            let t = state.apply(*fact);
            actions.push(t.stock_action);
            events.extend(t.emit);
            state = t.next;
        }
        (state, actions, events)
    }

    #[test]
    fn confirmed_once_stock_and_payment_are_both_done_in_either_order() {
        for facts in [
            [Fact::StockDeducted, Fact::PaymentSucceeded],
            [Fact::PaymentSucceeded, Fact::StockDeducted],
        ] {
            let (state, _, events) = run(&facts);
            assert_eq!(state.status, OrderStatus::Confirmed);
            assert_eq!(events, vec![RoutingKey::PaymentSucceeded, RoutingKey::OrderConfirmed]);
        }
    }

    #[test]
    fn a_declined_payment_cancels_and_release_undoes_whatever_stock_did() {
        let (state, actions, events) =
            run(&[Fact::StockDeducted, Fact::PaymentFailed, Fact::StockReleased]);
        assert_eq!(state.status, OrderStatus::Cancelled);
        assert_eq!(actions, vec![StockAction::Deduct, StockAction::None, StockAction::Restore]);
        assert_eq!(events, vec![RoutingKey::PaymentFailed, RoutingKey::OrderCancelled]);

        let (state, actions, _) =
            run(&[Fact::PaymentFailed, Fact::StockDeducted, Fact::StockReleased]);
        assert_eq!(state.stock, StockState::Released);
        assert_eq!(actions, vec![StockAction::None, StockAction::None, StockAction::ReleaseHeld]);
    }

    #[test]
    fn each_stock_action_moves_stock_and_reserved_as_documented() {
        assert_eq!(StockAction::None.delta(3), StockDelta::default());
        assert_eq!(StockAction::Deduct.delta(3), StockDelta { stock: -3, reserved: -3 });
        assert_eq!(StockAction::ReleaseHeld.delta(3), StockDelta { stock: 0, reserved: -3 });
        assert_eq!(StockAction::Restore.delta(3), StockDelta { stock: 3, reserved: 0 });
        assert_eq!(StockDelta::hold(2), StockDelta { stock: 0, reserved: 2 });
        let gives_back: Vec<bool> = [
            StockAction::None,
            StockAction::Deduct,
            StockAction::ReleaseHeld,
            StockAction::Restore,
        ]
        .map(StockAction::gives_back)
        .to_vec();
        assert_eq!(gives_back, vec![false, false, true, true]);
    }

    #[test]
    fn a_pay_later_order_is_confirmed_when_paid_and_cancelled_when_its_deadline_passes() {
        let (state, _, events) = run(&[
            Fact::PaymentRequested,
            Fact::StockDeducted,
            Fact::PaymentSucceeded,
            Fact::PaymentExpired,
        ]);
        assert_eq!(state.status, OrderStatus::Confirmed, "the deadline after payment is moot");
        assert_eq!(events, vec![RoutingKey::PaymentSucceeded, RoutingKey::OrderConfirmed]);

        let (state, actions, events) = run(&[
            Fact::PaymentRequested,
            Fact::StockDeducted,
            Fact::PaymentExpired,
            Fact::StockReleased,
        ]);
        assert_eq!((state.status, state.payment), (OrderStatus::Cancelled, PaymentState::Failed));
        assert_eq!(actions.last(), Some(&StockAction::Restore));
        assert_eq!(events, vec![RoutingKey::PaymentFailed, RoutingKey::OrderCancelled]);

        let (state, _, _) = run(&[Fact::PaymentRequested]);
        assert_eq!(state.status, OrderStatus::AwaitingPayment);
        let (state, _, _) = run(&[Fact::PaymentExpired]);
        assert_eq!(state.status, OrderStatus::Accepted, "no deadline before one was set");
    }

    #[test]
    fn an_operator_cancels_only_unpaid_waiting_orders_and_inventory_gives_the_units_back() {
        let (state, actions, events) =
            run(&[Fact::StockDeducted, Fact::OperatorCancelled, Fact::StockReleased]);
        assert_eq!((state.status, state.payment), (OrderStatus::Cancelled, PaymentState::Failed));
        assert_eq!(actions.last(), Some(&StockAction::Restore));
        assert_eq!(events, vec![RoutingKey::PaymentFailed, RoutingKey::OrderCancelled]);
        let (state, _, _) = run(&[Fact::PaymentRequested, Fact::OperatorCancelled]);
        assert_eq!(state.status, OrderStatus::Cancelled, "an order awaiting payment too");
        for kept in [
            run(&[Fact::StockDeducted, Fact::PaymentSucceeded, Fact::OperatorCancelled]).0,
            run(&[Fact::PaymentSucceeded, Fact::OperatorCancelled]).0,
            run_from(Lifecycle::awaiting_group(), &[Fact::OperatorCancelled]).0,
        ] {
            assert_ne!(kept.status, OrderStatus::Cancelled, "{kept:?}");
        }
        // Money that arrives after all is owed back, as after a deadline.
        let (state, _, _) = run(&[Fact::OperatorCancelled, Fact::PaymentSucceeded]);
        assert_eq!(state.payment, PaymentState::RefundRequired);
    }

    #[test]
    fn money_after_the_deadline_leaves_the_order_cancelled_and_owed_back_once() {
        let (state, _, events) = run(&[
            Fact::PaymentRequested,
            Fact::PaymentExpired,
            Fact::PaymentSucceeded,
            Fact::PaymentSucceeded,
        ]);
        assert_eq!(state.status, OrderStatus::Cancelled);
        assert_eq!(state.payment, PaymentState::RefundRequired);
        assert_eq!(
            events,
            vec![
                RoutingKey::PaymentFailed,
                RoutingKey::OrderCancelled,
                RoutingKey::PaymentRefundRequired
            ]
        );
    }

    #[test]
    fn states_round_trip_as_text() {
        for s in [StockState::Held, StockState::Deducted, StockState::Released] {
            assert_eq!(StockState::parse(s.as_str()), Some(s));
        }
        for p in [
            PaymentState::Pending,
            PaymentState::Succeeded,
            PaymentState::Failed,
            PaymentState::RefundRequired,
        ] {
            assert_eq!(PaymentState::parse(p.as_str()), Some(p));
        }
    }

    #[test]
    fn a_group_order_is_charged_only_after_its_group_completes() {
        let (state, _, events) = run_from(
            Lifecycle::awaiting_group(),
            &[Fact::StockDeducted, Fact::PaymentSucceeded, Fact::GroupCompleted],
        );
        assert_eq!(state.status, OrderStatus::Accepted, "the early charge did not count");
        assert_eq!(state.payment, PaymentState::Pending);
        assert_eq!(events, vec![RoutingKey::DealCompleted]);
        let (state, _, events) = run_from(state, &[Fact::PaymentSucceeded]);
        assert_eq!(state.status, OrderStatus::Confirmed);
        assert_eq!(events, vec![RoutingKey::PaymentSucceeded, RoutingKey::OrderConfirmed]);
    }

    #[test]
    fn an_expired_group_cancels_its_order_and_inventory_gives_the_units_back() {
        let (state, actions, events) = run_from(
            Lifecycle::awaiting_group(),
            &[Fact::StockDeducted, Fact::GroupExpired, Fact::GroupCompleted, Fact::StockReleased],
        );
        assert_eq!(state.status, OrderStatus::Cancelled);
        assert_eq!(state.stock, StockState::Released);
        assert_eq!(actions.last(), Some(&StockAction::Restore));
        assert_eq!(events, vec![RoutingKey::DealExpired], "completion after expiry is ignored");
    }

    fn fact() -> impl Strategy<Value = Fact> {
        prop_oneof![
            Just(Fact::StockDeducted),
            Just(Fact::StockReleased),
            Just(Fact::PaymentSucceeded),
            Just(Fact::PaymentFailed),
            Just(Fact::GroupCompleted),
            Just(Fact::GroupExpired),
            Just(Fact::PaymentRequested),
            Just(Fact::PaymentExpired),
            Just(Fact::OperatorCancelled),
        ]
    }

    fn start() -> impl Strategy<Value = Lifecycle> {
        prop_oneof![Just(Lifecycle::new()), Just(Lifecycle::awaiting_group())]
    }

    proptest! {
        #[test]
        fn any_sequence_keeps_stock_balanced_and_final_states_final(from in start(), facts in proptest::collection::vec(fact(), 0..12)) {
            let (state, actions, events) = run_from(from, &facts);
            // Net effect on stock of record: deducted at most once, restored only after a deduction.
            let deducts = actions.iter().filter(|a| **a == StockAction::Deduct).count();
            let restores = actions.iter().filter(|a| **a == StockAction::Restore).count();
            let releases = actions.iter().filter(|a| **a == StockAction::ReleaseHeld).count();
            prop_assert!(deducts <= 1 && restores <= deducts && releases <= 1);
            prop_assert!(restores + releases <= 1, "units are given back at most once");
            if restores + releases == 1 {
                prop_assert_eq!(state.status, OrderStatus::Cancelled, "only cancelled orders give units back");
            }
            // Confirmed and cancelled exclude each other, and each is announced at most once.
            let confirmed = events.iter().filter(|e| **e == RoutingKey::OrderConfirmed).count();
            let cancelled = events
                .iter()
                .filter(|e| matches!(e, RoutingKey::OrderCancelled | RoutingKey::DealExpired))
                .count();
            prop_assert!(confirmed + cancelled <= 1);
            let completed = events.iter().filter(|e| **e == RoutingKey::DealCompleted).count();
            prop_assert!(completed <= 1);
            if state.status == OrderStatus::Confirmed {
                prop_assert_eq!(state.stock, StockState::Deducted);
                prop_assert_eq!(state.payment, PaymentState::Succeeded);
            }
            if state.status == OrderStatus::Cancelled {
                // Cancelled by a decline, a missed payment deadline or its group expiring
                // before any charge: never after money was taken as payment.
                prop_assert_ne!(state.payment, PaymentState::Succeeded);
            }
            if state.payment == PaymentState::RefundRequired {
                prop_assert_eq!(state.status, OrderStatus::Cancelled, "owed back only when cancelled");
            }
            if state.status == OrderStatus::AwaitingPayment {
                prop_assert_eq!(state.payment, PaymentState::Pending);
            }
            if state.payment != PaymentState::Pending {
                prop_assert_ne!(state.status, OrderStatus::AwaitingGroup, "charged while awaiting its group");
            }
        }

        #[test]
        fn applying_the_same_fact_twice_changes_nothing_the_second_time(from in start(), facts in proptest::collection::vec(fact(), 0..8), last in fact()) {
            let (state, _, _) = run_from(from, &facts);
            let once = state.apply(last);
            let twice = once.next.apply(last);
            prop_assert_eq!(twice.next, once.next);
            prop_assert_eq!(twice.stock_action, StockAction::None);
            prop_assert!(twice.emit.is_empty());
        }
    }
}
