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
}

/// A notification that could not be sent now (the queue retries it).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("notification not delivered: {0}")]
pub struct NotifyError(pub String);

/// Where notifications go.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Sends one notification.
    ///
    /// # Errors
    /// [`NotifyError`] when it should be retried.
    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError>;
}
