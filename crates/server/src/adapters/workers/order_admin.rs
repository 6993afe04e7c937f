//! What an operator may do to one order: cancel it while it waits unpaid (an order left in
//! `accepted` after its payment was dead-lettered and purged, say). The cancellation is an
//! [`Effect`] of its own, applied like a consumer's: the store decides it under its lock on the
//! order ([`ordermill_core::Lifecycle::operator_may_cancel`]), emits `payment.failed` and
//! `order.cancelled`, and inventory gives the units back through the normal compensation path.
//! A confirmed order is refused: it was charged, and ordermill has no refund path (refund it
//! through the payment provider).

use std::sync::Arc;

use ordermill_core::ports::{EffectOutcome, StoreError};
use ordermill_core::{Fact, Order, OrderId, OrderStatus};
use serde::Serialize;

use super::{Pipeline, settle};

/// The consumer name of operators' actions in the store's processed records.
const OPERATOR: &str = "operator";

/// What a cancellation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelOutcome {
    /// Cancelled now; its stock goes back on sale.
    Cancelled,
    /// It was cancelled already; nothing changed.
    AlreadyCancelled,
}

/// Why an order cannot be cancelled.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// No such order.
    #[error("no order {0}")]
    NotFound(OrderId),
    /// The order is confirmed: it was charged.
    #[error(
        "order {0} is confirmed and was charged; refund it through the payment provider (ordermill has no refund path)"
    )]
    Confirmed(OrderId),
    /// The order waits for its deal's group; the deal decides it.
    #[error(
        "order {0} belongs to a group-buy deal that has not completed; it is cancelled if the deal expires"
    )]
    InDeal(OrderId),
    /// The order was paid and is being confirmed.
    #[error("order {0} is paid and is being confirmed; it cannot be cancelled")]
    Paid(OrderId),
    /// The store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CancelError {
    /// The stable code of a refusal.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "order_not_found",
            Self::Confirmed(_) => "order_confirmed",
            Self::InDeal(_) => "order_in_deal",
            Self::Paid(_) => "order_paid",
            Self::Store(_) => "store_unavailable",
        }
    }
}

/// Operators' actions on orders.
pub struct OrderAdmin {
    pipeline: Pipeline,
    consumer: Arc<str>,
}

impl OrderAdmin {
    /// Actions applied through `pipeline`'s store, bus and caches.
    pub fn new(pipeline: Pipeline) -> Self {
        OrderAdmin { pipeline, consumer: Arc::from(OPERATOR) }
    }

    /// Now, on the node's clock.
    pub fn now(&self) -> ordermill_core::UnixMillis {
        self.pipeline.clock.now()
    }

    /// Cancels order `id` with `reason` (carried by its `order.cancelled` event). Repeating it
    /// answers [`CancelOutcome::AlreadyCancelled`].
    ///
    /// # Errors
    /// See [`CancelError`]; nothing is written on error.
    pub async fn cancel(
        &self,
        id: OrderId,
        reason: String,
    ) -> Result<(CancelOutcome, Order), CancelError> {
        let store = &self.pipeline.store;
        let order = store.get_order(id).await?.ok_or(CancelError::NotFound(id))?;
        if order.status == OrderStatus::Cancelled {
            return Ok((CancelOutcome::AlreadyCancelled, order));
        }
        // A fresh event id each time: whether it applies is the state machine's call, so a
        // refused attempt does not stop a later one once the order can be cancelled.
        let effect = settle::effect(
            &self.pipeline,
            &self.consumer,
            self.pipeline.ids.next_uuid(self.pipeline.clock.now()),
            id,
            Some(Fact::OperatorCancelled),
            Some(reason.clone()),
        );
        let outcomes = settle::apply_detached(&self.pipeline, &self.consumer, vec![effect]).await?;
        let now = match outcomes.into_iter().next() {
            Some(EffectOutcome::Applied { order, status_changed: true, .. }) => {
                tracing::info!(order_id = %id, reason = %reason, "Order cancelled by an operator; its stock goes back on sale.");
                return Ok((CancelOutcome::Cancelled, order));
            }
            Some(EffectOutcome::Applied { order, .. }) => order,
            Some(EffectOutcome::OrderNotFound) => return Err(CancelError::NotFound(id)),
            _ => store.get_order(id).await?.ok_or(CancelError::NotFound(id))?,
        };
        match now.status {
            OrderStatus::Cancelled => Ok((CancelOutcome::AlreadyCancelled, now)),
            OrderStatus::Confirmed => Err(CancelError::Confirmed(id)),
            OrderStatus::AwaitingGroup => Err(CancelError::InDeal(id)),
            OrderStatus::Accepted | OrderStatus::AwaitingPayment => Err(CancelError::Paid(id)),
        }
    }
}
