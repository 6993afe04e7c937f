//! Telling customers what happened to their order.

use async_trait::async_trait;
use serde::Serialize;
use thiserror::Error;
use uuid::Uuid;

/// A notification to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    /// The event it is about; receivers deduplicate on it.
    pub event_id: Uuid,
    /// `order.created`, `order.confirmed`, `order.cancelled`, ...
    pub kind: String,
    /// The order.
    pub order_id: String,
    /// The customer.
    pub customer_id: String,
    /// Why, when the event says (a decline, `payment_timeout`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A notification that was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NotifyError {
    /// Not now (an outage, a timeout, a 5xx): the queue retries it.
    #[error("notification not delivered: {0}")]
    Transient(String),
    /// The receiver refused the request itself ([`crate::outside::definite_refusal`]):
    /// dead-lettered at once for an operator.
    #[error("notification refused: {0}")]
    Rejected(String),
}

/// Where notifications go.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Sends one notification.
    ///
    /// # Errors
    /// [`NotifyError`] when it should be retried.
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError>;
}
