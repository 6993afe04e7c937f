//! Notifications as `POST {url}` with the notification as JSON, an `Idempotency-Key` of the
//! event id, so a receiver drops the rare repeat (a worker killed between the send and its
//! record sends that one event again, under the same key), and, with `notify.webhook_secret`,
//! an `X-Ordermill-Signature` the receiver checks ([`super::signature`]). Non-2xx or a timeout
//! is an error; the queue retries it with backoff and dead-letters it after the last attempt.

use std::sync::Arc;

use async_trait::async_trait;
use ordermill_core::Clock;
use ordermill_core::ports::{Notification, Notifier, NotifyError};

use super::{refusal, signature, unanswered};
use crate::startup::settings::{Secret, SecretUrl};

/// The webhook notifier.
pub struct WebhookNotifier {
    url: SecretUrl,
    secret: Option<Secret>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
}

impl WebhookNotifier {
    /// A notifier posting to `url` through `client` ([`super::http_client`]), signing with
    /// `secret` when given (the signature's timestamp from `clock`).
    pub fn new(
        url: SecretUrl,
        client: reqwest::Client,
        secret: Option<Secret>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        WebhookNotifier { url, secret, clock, client }
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn notify(&self, n: &Notification) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(n)
            .map_err(|e| NotifyError::Rejected(format!("cannot encode the notification: {e}")))?;
        let mut request = self
            .client
            .post(self.url.expose())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Idempotency-Key", n.event_id.to_string());
        if let Some(secret) = &self.secret {
            let seconds = self.clock.now().0.div_euclid(1_000);
            request = request.header(
                signature::HEADER,
                signature::sign(secret.expose().as_bytes(), seconds, &body),
            );
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| NotifyError::Transient(unanswered(&self.url, "notify", &e)))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if ordermill_core::outside::definite_refusal(status.as_u16()) {
            Err(NotifyError::Rejected(refusal("webhook", "notify.url", &response)))
        } else {
            Err(NotifyError::Transient(refusal("webhook", "notify.url", &response)))
        }
    }
}
