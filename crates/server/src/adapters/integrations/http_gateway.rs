//! A payment gateway over HTTP: `POST {url}` with the charge as JSON and an
//! `Idempotency-Key` of the order id. 2xx is success, 402 is a decline, a 4xx that says the
//! request is wrong is a definite refusal (dead-lettered at once), anything else (5xx, 408,
//! 429, a timeout, a refused connection) is transient and retried through the queue.

use async_trait::async_trait;
use ordermill_core::ports::{ChargeError, ChargeRequest, PaymentGateway};
use serde_json::json;

use super::{refusal, unanswered};
use crate::startup::settings::SecretUrl;

/// The HTTP gateway.
pub struct HttpGateway {
    url: SecretUrl,
    client: reqwest::Client,
}

impl HttpGateway {
    /// A gateway posting to `url` through `client` ([`super::http_client`]: its timeout, its
    /// trusted CAs, no redirects).
    pub fn new(url: SecretUrl, client: reqwest::Client) -> Self {
        HttpGateway { url, client }
    }
}

impl HttpGateway {
    /// POSTs `body` for `request`'s order; a response that is not a success is the error.
    async fn post(
        &self,
        request: &ChargeRequest,
        body: serde_json::Value,
    ) -> Result<reqwest::Response, ChargeError> {
        let response = self
            .client
            .post(self.url.expose())
            .header("Idempotency-Key", request.order_id.to_string())
            .json(&body)
            .send()
            .await
            .map_err(|e| ChargeError::Transient(unanswered(&self.url, "payment", &e)))?;
        let status = response.status();
        if status.is_success() {
            Ok(response)
        } else if status.as_u16() == 402 {
            let reason = response.text().await.unwrap_or_default();
            Err(ChargeError::Declined(format!(
                "gateway answered 402: {}",
                reason.chars().take(200).collect::<String>()
            )))
        } else if ordermill_core::outside::definite_refusal(status.as_u16()) {
            Err(ChargeError::Rejected(refusal("gateway", "payment.url", &response)))
        } else {
            Err(ChargeError::Transient(refusal("gateway", "payment.url", &response)))
        }
    }
}

/// What the provider answers a payment request with (other fields are ignored).
#[derive(serde::Deserialize)]
struct Intent {
    payment_url: String,
}

#[async_trait]
impl PaymentGateway for HttpGateway {
    async fn charge(&self, request: &ChargeRequest) -> Result<(), ChargeError> {
        let body = json!({
            "order_id": request.order_id.to_string(),
            "customer_id": request.customer_id,
            "amount": request.amount.to_string(),
        });
        self.post(request, body).await.map(drop)
    }

    async fn request_payment(
        &self,
        request: &ChargeRequest,
        pay_by: ordermill_core::UnixMillis,
    ) -> Result<String, ChargeError> {
        let body = json!({
            "mode": "await_callback",
            "order_id": request.order_id.to_string(),
            "customer_id": request.customer_id,
            "amount": request.amount.to_string(),
            "pay_by": pay_by.0,
        });
        let response = self.post(request, body).await?;
        // A success without a usable URL is the provider's contract broken: retrying the same
        // request cannot fix it, so it is dead-lettered for an operator to look at.
        let intent: Intent = response.json().await.map_err(|e| {
            ChargeError::Rejected(format!(
                "the gateway's answer has no \"payment_url\" string: {}",
                e.without_url()
            ))
        })?;
        if !(intent.payment_url.starts_with("https://")
            || intent.payment_url.starts_with("http://"))
        {
            return Err(ChargeError::Rejected(
                "the gateway's payment_url is not an http(s) URL".into(),
            ));
        }
        Ok(intent.payment_url)
    }
}
