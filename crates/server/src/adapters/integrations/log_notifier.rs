//! Notifications as log lines (the default: no outside service needed).

use async_trait::async_trait;
use ordermill_core::ports::{Notification, Notifier, NotifyError};

/// Logs each notification at info level.
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        tracing::info!(kind = %n.kind, order_id = %n.order_id, customer_id = %n.customer_id, event_id = %n.event_id, "Customer notified.");
        Ok(())
    }
}
