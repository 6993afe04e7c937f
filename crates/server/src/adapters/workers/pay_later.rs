//! Pay later (`payment.mode = "await_callback"`): the payment provider's callback settles an
//! awaiting order, and the deadline scheduler cancels those left unpaid.
//!
//! Both act on the order exactly as a consumer does: an [`Effect`] applied by the store in
//! ONE transaction with its "processed" record, then [`settle::after_commit`] publishes the
//! events, gives units back and refreshes the read cache ([`settle::apply_detached`] runs the
//! two in a task of their own, so a client that hangs up cannot separate them). So a callback and a deadline that
//! race are decided by the store's lock on the order row: whichever commits first wins, and
//! the state machine turns the loser into nothing (a payment after the deadline) or into
//! `refund_required` (money after the cancellation). Each effect's event id is derived from
//! the order and what happened ([`OrderId::derived_event_id`]), so a repeated callback or a
//! deadline fired by two nodes is recognised as a repeat.
//!
//! Deadlines live in the store (`payment_deadlines`), not in timers or broker TTLs: a restart
//! loses none, the first check runs at start-up and fires whatever came due while the node
//! was down, and time is read from the injected clock, so tests move it by hand.

use std::sync::Arc;
use std::time::Duration;

use metrics::counter;
use ordermill_core::ports::{Effect, EffectOutcome, StoreError};
use ordermill_core::{Fact, Money, Order, OrderId, RoutingKey};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::{Pipeline, settle};
use crate::telemetry;

/// The consumer name of payment callbacks in the store's processed records.
const CALLBACKS: &str = "payment_callback";
/// The consumer name of the deadline scheduler in the store's processed records.
const DEADLINES: &str = "payment_timeout";
/// The reason carried by the events of an order cancelled at its deadline.
pub const TIMEOUT_REASON: &str = "payment_timeout";
/// Deadlines handled per store transaction.
const BATCH: u32 = 256;

/// What the provider says about a payment.
#[derive(Debug, Clone)]
pub struct Callback {
    /// The order paid for.
    pub order_id: OrderId,
    /// The provider's id of the payment.
    pub payment_id: String,
    /// `paid` (true) or `failed`.
    pub paid: bool,
    /// The amount the provider took (or tried to).
    pub amount: Money,
}

/// What a callback did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackOutcome {
    /// The order is paid (confirmed once its stock is deducted).
    Paid,
    /// The order is cancelled and its stock goes back on sale.
    Failed,
    /// The order was already cancelled (its deadline passed): it stays cancelled, and the
    /// money must be given back (`payment.refund_required`).
    RefundRequired,
    /// This callback was handled before; nothing changed.
    Repeat,
    /// Nothing changed: the order was already paid or already cancelled.
    Ignored,
}

impl CallbackOutcome {
    /// The outcome as answered and counted.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Paid => "paid",
            Self::Failed => "failed",
            Self::RefundRequired => "refund_required",
            Self::Repeat => "repeat",
            Self::Ignored => "ignored",
        }
    }
}

/// Why a callback was refused.
#[derive(Debug, thiserror::Error)]
pub enum CallbackError {
    /// No such order.
    #[error("no order {0}")]
    NotFound(OrderId),
    /// The amount is not the order's total.
    #[error("amount {got} is not the order's total {expected}")]
    AmountMismatch {
        /// The order's total.
        expected: Money,
        /// What the callback said.
        got: Money,
    },
    /// The store could not be read or written; the provider should call again.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Callbacks and deadlines of pay-later orders.
pub struct PayLater {
    pipeline: Pipeline,
    callbacks: Arc<str>,
    deadlines: Arc<str>,
}

impl PayLater {
    /// Pay later on `pipeline`'s store, bus and caches.
    pub fn new(pipeline: Pipeline) -> Self {
        PayLater { pipeline, callbacks: Arc::from(CALLBACKS), deadlines: Arc::from(DEADLINES) }
    }

    /// Applies a verified callback; returns what it did and the order as it is now.
    ///
    /// # Errors
    /// See [`CallbackError`]; nothing is written on error.
    pub async fn callback(
        &self,
        callback: Callback,
    ) -> Result<(CallbackOutcome, Order), CallbackError> {
        let store = &self.pipeline.store;
        let order = store
            .get_order(callback.order_id)
            .await?
            .ok_or(CallbackError::NotFound(callback.order_id))?;
        if callback.amount != order.total {
            return Err(CallbackError::AmountMismatch {
                expected: order.total,
                got: callback.amount,
            });
        }
        let status = if callback.paid { "paid" } else { "failed" };
        let event_id =
            order.id.derived_event_id(&format!("callback:{}:{status}", callback.payment_id));
        let (fact, reason) = if callback.paid {
            (Fact::PaymentSucceeded, Some("paid after the order was cancelled".to_owned()))
        } else {
            (
                Fact::PaymentFailed,
                Some("the payment provider reported the payment failed".to_owned()),
            )
        };
        let effect =
            settle::effect(&self.pipeline, &self.callbacks, event_id, order.id, Some(fact), reason);
        // Providers send a callback again until they see it answered.
        let effect = Effect { may_repeat: true, ..effect };
        let outcomes =
            settle::apply_detached(&self.pipeline, &self.callbacks, vec![effect]).await?;
        let outcome = match outcomes.first() {
            Some(EffectOutcome::Applied { emitted, .. }) => {
                if emitted.iter().any(|e| e.routing_key == RoutingKey::PaymentRefundRequired) {
                    CallbackOutcome::RefundRequired
                } else if emitted.is_empty() {
                    CallbackOutcome::Ignored
                } else if callback.paid {
                    CallbackOutcome::Paid
                } else {
                    CallbackOutcome::Failed
                }
            }
            Some(EffectOutcome::OrderNotFound) => {
                return Err(CallbackError::NotFound(callback.order_id));
            }
            _ => CallbackOutcome::Repeat,
        };
        let now = match outcomes.into_iter().next() {
            Some(EffectOutcome::Applied { order, .. }) => order,
            _ => store.get_order(order.id).await?.unwrap_or(order),
        };
        counter!(telemetry::PAYMENT_CALLBACKS, "outcome" => outcome.as_str()).increment(1);
        tracing::info!(order_id = %now.id, payment_id = %callback.payment_id, outcome = outcome.as_str(), "Payment callback handled.");
        Ok((outcome, now))
    }

    /// Cancels every awaiting order whose deadline has passed; returns how many it cancelled.
    ///
    /// # Errors
    /// When the store cannot be read or written; the deadlines are tried again next time.
    pub async fn expire_due(&self) -> Result<usize, StoreError> {
        let mut cancelled = 0;
        loop {
            let due = self.pipeline.store.due_payments(self.pipeline.clock.now(), BATCH).await?;
            let full = due.len() == BATCH as usize;
            let effects: Vec<Effect> = due
                .into_iter()
                .map(|order_id| Effect {
                    // Every node sweeps: another may have expired the same order just now.
                    may_repeat: true,
                    ..settle::effect(
                        &self.pipeline,
                        &self.deadlines,
                        order_id.derived_event_id(DEADLINES),
                        order_id,
                        Some(Fact::PaymentExpired),
                        Some(TIMEOUT_REASON.to_owned()),
                    )
                })
                .collect();
            if effects.is_empty() {
                return Ok(cancelled);
            }
            let outcomes = settle::apply_detached(&self.pipeline, &self.deadlines, effects).await?;
            let now_cancelled = outcomes
                .iter()
                .filter(|o| matches!(o, EffectOutcome::Applied { status_changed: true, .. }))
                .count();
            for outcome in &outcomes {
                if let EffectOutcome::Applied { order, status_changed: true, .. } = outcome {
                    tracing::info!(order_id = %order.id, customer_id = order.customer_id.as_str(), "Unpaid order cancelled at its payment deadline; its stock goes back on sale.");
                }
            }
            counter!(telemetry::PAYMENT_TIMEOUTS).increment(now_cancelled as u64);
            cancelled += now_cancelled;
            // A full batch that changed nothing would be read again forever: stop until the
            // next check (a deadline row outlives its order's wait only through a bug).
            if !full || now_cancelled == 0 {
                return Ok(cancelled);
            }
        }
    }
}

/// Checks for passed payment deadlines every `every` until `stop`; the first check runs at
/// once, so deadlines that passed while the node was down fire at start-up.
pub async fn run(pay_later: Arc<PayLater>, every: Duration, stop: CancellationToken) {
    loop {
        if let Err(error) = pay_later.expire_due().await {
            tracing::error!(error = %error, "Could not cancel unpaid orders whose deadline passed; trying again at the next check.");
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(every) => {}
        }
    }
    tracing::debug!("Payment deadline scheduler stopped.");
}
