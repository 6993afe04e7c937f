//! The outside world the consumers talk to: payment gateways and notifiers, one module per
//! implementation, chosen by configuration.

pub mod http_gateway;
pub mod log_notifier;
pub mod signature;
pub mod simulated_gateway;
pub mod webhook_notifier;

use std::sync::Arc;
use std::time::Duration;

use ordermill_core::Clock;
use ordermill_core::ports::{Notifier, PaymentGateway};

use crate::startup::settings::{GatewayKind, NotifierKind, NotifySettings, PaymentSettings};

/// Why an integration could not be built from its settings.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct IntegrationError(pub String);

/// The payment gateway the settings ask for.
///
/// # Errors
/// When `http` is chosen without a URL, or the HTTP client cannot be built.
pub fn payment_gateway(
    settings: &PaymentSettings,
) -> Result<Arc<dyn PaymentGateway>, IntegrationError> {
    match settings.gateway {
        GatewayKind::Simulated => {
            tracing::info!(
                gateway = "simulated",
                latency_ms = settings.latency.get().as_millis() as u64,
                failure_rate = settings.failure_rate,
                "Payments go to the simulated gateway (no money moves); set payment.gateway = \"http\" and payment.url for a real one."
            );
            Ok(Arc::new(simulated_gateway::SimulatedGateway::new(
                settings.latency.get(),
                settings.failure_rate,
            )))
        }
        GatewayKind::Http => {
            let url = settings.url.clone().ok_or_else(|| {
                IntegrationError(
                    "payment.gateway = \"http\" needs payment.url (ORDERMILL_PAYMENT__URL)".into(),
                )
            })?;
            tracing::info!(gateway = "http", url = %url, timeout_ms = settings.timeout.get().as_millis() as u64, "Payments go to an HTTP gateway.");
            Ok(Arc::new(http_gateway::HttpGateway::new(url, settings.timeout.get())?))
        }
    }
}

/// The notifier the settings ask for.
///
/// # Errors
/// When `webhook` is chosen without a URL, or the HTTP client cannot be built.
pub fn notifier(
    settings: &NotifySettings,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn Notifier>, IntegrationError> {
    match settings.notifier {
        NotifierKind::Log => {
            tracing::info!(notifier = "log", "Notifications go to the log.");
            Ok(Arc::new(log_notifier::LogNotifier))
        }
        NotifierKind::Webhook => {
            let url = settings.url.clone().ok_or_else(|| {
                IntegrationError(
                    "notify.notifier = \"webhook\" needs notify.url (ORDERMILL_NOTIFY__URL)".into(),
                )
            })?;
            let signed = settings.webhook_secret.is_some();
            tracing::info!(notifier = "webhook", url = %url, signed, "Notifications go to a webhook.");
            if !signed {
                tracing::warn!(
                    "Webhooks go out unsigned: set notify.webhook_secret (ORDERMILL_NOTIFY__WEBHOOK_SECRET) so receivers can tell them from forgeries."
                );
            }
            Ok(Arc::new(webhook_notifier::WebhookNotifier::new(
                url,
                settings.timeout.get(),
                settings.webhook_secret.clone(),
                clock,
            )?))
        }
    }
}

fn http_client(timeout: Duration) -> Result<reqwest::Client, IntegrationError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| IntegrationError(format!("cannot build the HTTP client: {e}")))
}
