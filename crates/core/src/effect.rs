//! What one consumer effect does to its order: the state machine's transition turned into
//! the writes a store makes (the order's new state and history, stock moved per line, a
//! payments row, the events emitted). Every store backend calls [`Effect::apply_to`] and
//! only persists what it returns, so these rules exist once.

use crate::event::{OutboxEvent, RoutingKey};
use crate::lifecycle::PaymentState;
use crate::lifecycle::{Fact, Lifecycle, StockDelta};
use crate::order::{HistoryNote, Order, OrderLine, OrderStatus, StatusChange};
use crate::ports::{Effect, EffectOutcome};
use crate::sku::Sku;

/// A row of the payments ledger: what the gateway answered for an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentRecord {
    /// Charged.
    Succeeded,
    /// Declined; never charged.
    Declined,
    /// Pay later: not paid before the deadline; never charged.
    Expired,
    /// Cancelled by an operator before any charge.
    Cancelled,
    /// Paid after the order was cancelled: the money must be given back.
    RefundRequired,
}

impl PaymentRecord {
    /// The value as stored in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Declined => "declined",
            Self::Expired => "expired",
            Self::Cancelled => "cancelled",
            Self::RefundRequired => "refund_required",
        }
    }
}

/// What [`Effect::apply_to`] decided; the store writes it in the effect's transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedEffect {
    /// The order's state after the effect.
    pub next: Lifecycle,
    /// Whether the order's row changed (state or history) and must be written.
    pub changed: bool,
    /// Whether the visible status changed.
    pub status_changed: bool,
    /// How each of the order's product rows moves (one entry per line; none when stock
    /// does not move).
    pub stock: Vec<(Sku, StockDelta)>,
    /// Lines whose units come back on sale (the hot-stock cache must be given them).
    pub released: Vec<OrderLine>,
    /// The payments ledger row to add, when the payment state changed.
    pub payment: Option<PaymentRecord>,
    /// Events to write to the outbox with the effect, in order.
    pub emitted: Vec<OutboxEvent>,
}

impl AppliedEffect {
    /// The outcome reported to the consumer, with the order as the effect left it.
    pub fn into_outcome(self, order: &Order) -> EffectOutcome {
        EffectOutcome::Applied {
            order: order.clone(),
            emitted: self.emitted,
            released: self.released,
            status_changed: self.status_changed,
        }
    }
}

impl Effect {
    /// Whether this effect only records that its consumer processed the event (no fact about
    /// the order): the store then records it without reading the order.
    pub fn records_only(&self) -> bool {
        self.fact.is_none()
    }

    /// Applies this effect to `order`, whose stored state is `state`: moves its status and
    /// history, and says what else to write. An effect that records processing only (no
    /// fact), or a fact that no longer applies, changes nothing.
    pub fn apply_to(&self, order: &mut Order, state: Lifecycle) -> AppliedEffect {
        let unchanged = AppliedEffect {
            next: state,
            changed: false,
            status_changed: false,
            stock: Vec::new(),
            released: Vec::new(),
            payment: None,
            emitted: Vec::new(),
        };
        let Some(fact) = self.fact else { return unchanged };
        let transition = state.apply(fact);
        let status_changed = transition.status_changed(&state);
        let action = transition.stock_action;
        let stock = if action.delta(1).is_zero() {
            Vec::new()
        } else {
            order
                .lines
                .iter()
                .map(|line| (line.sku.clone(), action.delta(i64::from(line.quantity.get()))))
                .collect()
        };
        let released = if action.gives_back() { order.lines.clone() } else { Vec::new() };
        order.status = transition.next.status;
        if status_changed {
            order.history.push(StatusChange::new(transition.next.status, self.at));
        }
        if transition.next.status == OrderStatus::AwaitingPayment
            && status_changed
            && let Some(awaited) = &self.awaited_payment
        {
            order.awaited_payment = Some(Box::new(awaited.clone()));
        }
        let payment = (transition.next.payment != state.payment).then_some(
            match (fact, transition.next.payment) {
                (_, PaymentState::RefundRequired) => PaymentRecord::RefundRequired,
                (Fact::PaymentSucceeded, _) => PaymentRecord::Succeeded,
                (Fact::PaymentExpired, _) => PaymentRecord::Expired,
                (Fact::OperatorCancelled, _) => PaymentRecord::Cancelled,
                _ => PaymentRecord::Declined,
            },
        );
        if payment == Some(PaymentRecord::RefundRequired) {
            order.history.push(StatusChange {
                status: order.status,
                at: self.at,
                note: Some(HistoryNote::RefundRequired),
            });
        }
        let emitted = transition
            .emit
            .iter()
            .zip(self.new_event_ids)
            .filter(|(key, _)| !self.unrouted.contains(**key))
            .map(|(key, id)| {
                // A decline's reason travels with the events that announce it.
                let reason = (*key == RoutingKey::PaymentFailed
                    || order.status == OrderStatus::Cancelled)
                    .then_some(self.reason.as_deref())
                    .flatten();
                OutboxEvent::order_changed(order, *key, id, self.at, reason)
            })
            .collect();
        AppliedEffect {
            next: transition.next,
            changed: transition.next != state || status_changed || payment.is_some(),
            status_changed,
            stock,
            released,
            payment,
            emitted,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use uuid::Uuid;

    use super::*;
    use crate::{
        CustomerId, Money, OrderIdGenerator, PaymentState, Quantity, StockState, UnixMillis,
    };

    fn order() -> Order {
        let now = UnixMillis(1_790_000_000_000);
        let lines: Vec<OrderLine> = [("a", 2), ("b", 1)]
            .into_iter()
            .map(|(sku, q)| {
                OrderLine::priced(
                    Sku::parse(sku).unwrap(),
                    Quantity::parse(q).unwrap(),
                    Money::parse("price", "1.50").unwrap(),
                )
                .unwrap()
            })
            .collect();
        Order {
            id: OrderIdGenerator::new().next(now),
            customer_id: CustomerId::parse("c").unwrap(),
            total: crate::order::total_of(&lines).unwrap(),
            lines,
            status: OrderStatus::Accepted,
            created_at: now,
            idempotency_key: None,
            history: Vec::new(),
            awaited_payment: None,
        }
    }

    fn effect(order: &Order, fact: Option<Fact>) -> Effect {
        Effect {
            consumer: Arc::from("payment"),
            event_id: Uuid::now_v7(),
            order_id: order.id,
            fact,
            reason: Some("card declined".into()),
            new_event_ids: [Uuid::now_v7(), Uuid::now_v7()],
            at: UnixMillis(1_790_000_000_500),
            unrouted: crate::event::RoutingKeys::NONE,
            awaited_payment: None,
            may_repeat: false,
        }
    }

    #[test]
    fn a_deduction_moves_every_line_and_changes_no_status() {
        let mut o = order();
        let applied = effect(&o, Some(Fact::StockDeducted)).apply_to(&mut o, Lifecycle::new());
        assert!(applied.changed && !applied.status_changed);
        assert_eq!(applied.next.stock, StockState::Deducted);
        let moved: Vec<(&str, StockDelta)> =
            applied.stock.iter().map(|(s, d)| (s.as_str(), *d)).collect();
        assert_eq!(
            moved,
            vec![
                ("a", StockDelta { stock: -2, reserved: -2 }),
                ("b", StockDelta { stock: -1, reserved: -1 })
            ]
        );
        assert!(applied.released.is_empty() && applied.payment.is_none());
        assert!(applied.emitted.is_empty() && o.history.is_empty());
    }

    #[test]
    fn a_decline_cancels_records_the_ledger_row_and_carries_its_reason() {
        let mut o = order();
        let applied = effect(&o, Some(Fact::PaymentFailed)).apply_to(&mut o, Lifecycle::new());
        assert_eq!(o.status, OrderStatus::Cancelled);
        assert_eq!(o.history.len(), 1);
        assert_eq!(applied.payment, Some(PaymentRecord::Declined));
        assert_eq!(applied.next.payment, PaymentState::Failed);
        let keys: Vec<RoutingKey> = applied.emitted.iter().map(|e| e.routing_key).collect();
        assert_eq!(keys, vec![RoutingKey::PaymentFailed, RoutingKey::OrderCancelled]);
        assert!(applied.emitted.iter().all(|e| e.payload.contains("card declined")));
        assert!(applied.stock.is_empty(), "stock moves when inventory releases it");
    }

    #[test]
    fn a_release_after_cancellation_gives_the_units_back() {
        let mut o = order();
        let cancelled = Lifecycle {
            status: OrderStatus::Cancelled,
            stock: StockState::Held,
            payment: PaymentState::Failed,
        };
        o.status = OrderStatus::Cancelled;
        let applied = effect(&o, Some(Fact::StockReleased)).apply_to(&mut o, cancelled);
        assert_eq!(applied.released, o.lines);
        assert!(applied.stock.iter().all(|(_, d)| d.stock == 0 && d.reserved < 0));
    }

    #[test]
    fn a_confirmation_emits_payment_then_confirmed_and_success_reasons_stay_out() {
        let mut o = order();
        let deducted = Lifecycle { stock: StockState::Deducted, ..Lifecycle::new() };
        let applied = effect(&o, Some(Fact::PaymentSucceeded)).apply_to(&mut o, deducted);
        assert_eq!(o.status, OrderStatus::Confirmed);
        assert_eq!(applied.payment, Some(PaymentRecord::Succeeded));
        assert!(applied.emitted.iter().all(|e| !e.payload.contains("card declined")));
    }

    #[test]
    fn processing_only_and_stale_facts_change_nothing() {
        let mut o = order();
        let before = o.clone();
        let applied = effect(&o, None).apply_to(&mut o, Lifecycle::new());
        assert!(!applied.changed && applied.emitted.is_empty() && applied.stock.is_empty());
        let confirmed = Lifecycle {
            status: OrderStatus::Confirmed,
            stock: StockState::Deducted,
            payment: PaymentState::Succeeded,
        };
        o.status = OrderStatus::Confirmed;
        let applied = effect(&o, Some(Fact::PaymentFailed)).apply_to(&mut o, confirmed);
        assert!(!applied.changed && applied.payment.is_none());
        assert_eq!(o.history, before.history);
    }

    #[test]
    fn a_payment_request_keeps_the_url_and_deadline_and_late_money_is_noted_once() {
        let mut o = order();
        let mut request = effect(&o, Some(Fact::PaymentRequested));
        let awaited = crate::order::AwaitedPayment {
            pay_by: UnixMillis(1_790_000_900_000),
            payment_url: "https://pay.example/o/1".into(),
        };
        request.awaited_payment = Some(awaited.clone());
        let applied = request.apply_to(&mut o, Lifecycle::new());
        assert_eq!(o.status, OrderStatus::AwaitingPayment);
        assert_eq!(o.awaited_payment.as_deref(), Some(&awaited));
        assert!(applied.changed && applied.emitted.is_empty() && applied.payment.is_none());

        let expired = effect(&o, Some(Fact::PaymentExpired)).apply_to(&mut o, applied.next);
        assert_eq!(expired.payment, Some(PaymentRecord::Expired));
        assert_eq!(o.status, OrderStatus::Cancelled);
        let late = effect(&o, Some(Fact::PaymentSucceeded)).apply_to(&mut o, expired.next);
        assert_eq!(late.payment, Some(PaymentRecord::RefundRequired));
        assert!(late.changed && !late.status_changed);
        assert_eq!(o.status, OrderStatus::Cancelled, "not resurrected");
        let last = o.history.last().copied().unwrap();
        assert_eq!(
            (last.status, last.note),
            (OrderStatus::Cancelled, Some(HistoryNote::RefundRequired))
        );
        let keys: Vec<RoutingKey> = late.emitted.iter().map(|e| e.routing_key).collect();
        assert_eq!(keys, vec![RoutingKey::PaymentRefundRequired]);
        let again = effect(&o, Some(Fact::PaymentSucceeded)).apply_to(&mut o, late.next);
        assert!(!again.changed && again.emitted.is_empty());
    }

    #[test]
    fn events_no_queue_is_bound_to_are_not_emitted() {
        let mut o = order();
        let deducted = Lifecycle::new().apply(Fact::StockDeducted).next;
        let mut pay = effect(&o, Some(Fact::PaymentSucceeded));
        let all = pay.clone().apply_to(&mut o.clone(), deducted);
        let keys: Vec<RoutingKey> = all.emitted.iter().map(|e| e.routing_key).collect();
        assert_eq!(keys, vec![RoutingKey::PaymentSucceeded, RoutingKey::OrderConfirmed]);
        pay.unrouted = crate::event::RoutingKeys::of(|k| k == RoutingKey::PaymentSucceeded);
        let applied = pay.apply_to(&mut o, deducted);
        let keys: Vec<RoutingKey> = applied.emitted.iter().map(|e| e.routing_key).collect();
        assert_eq!(keys, vec![RoutingKey::OrderConfirmed], "the confirmation still goes out");
        assert_eq!(applied.emitted[0].event_id, all.emitted[1].event_id, "with its own id");
        assert!(applied.status_changed && applied.payment.is_some(), "the rest is unchanged");
    }
}
