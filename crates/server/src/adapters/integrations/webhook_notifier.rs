//! Notifications as `POST {url}` with the notification as JSON and an `Idempotency-Key` of the
//! event id, so a receiver drops the rare repeat (a worker killed between the send and its
//! record sends that one event again, under the same key). Non-2xx or a timeout is an error;
//! the queue retries it with backoff and dead-letters it after the last attempt.

use std::time::Duration;

use async_trait::async_trait;
use ordermill_core::ports::{Notification, Notifier, NotifyError};

use super::{IntegrationError, http_client};
use crate::startup::settings::SecretUrl;

/// The webhook notifier.
pub struct WebhookNotifier {
    url: SecretUrl,
    client: reqwest::Client,
}

impl WebhookNotifier {
    /// A notifier posting to `url` with `timeout` per request.
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(url: SecretUrl, timeout: Duration) -> Result<Self, IntegrationError> {
        Ok(WebhookNotifier { url, client: http_client(timeout)? })
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        let response = self
            .client
            .post(self.url.expose())
            .header("Idempotency-Key", n.event_id.to_string())
            .json(n)
            .send()
            .await
            .map_err(|e| {
                NotifyError::Transient(format!("POST {}: {}", self.url, e.without_url()))
            })?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if ordermill_core::outside::definite_refusal(status.as_u16()) {
            Err(NotifyError::Rejected(format!("webhook answered {status}")))
        } else {
            Err(NotifyError::Transient(format!("webhook answered {status}")))
        }
    }
}
