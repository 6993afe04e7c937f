//! The outside world the consumers talk to: payment gateways and notifiers, one module per
//! implementation, chosen by configuration.

pub mod http_gateway;
pub mod log_notifier;
pub mod simulated_gateway;
pub mod webhook_notifier;

use std::sync::Arc;
use std::time::Duration;

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
        GatewayKind::Simulated => Ok(Arc::new(simulated_gateway::SimulatedGateway::new(
            settings.latency.get(),
            settings.failure_rate,
        ))),
        GatewayKind::Http => {
            let url = settings.url.clone().ok_or_else(|| {
                IntegrationError(
                    "payment.gateway = \"http\" needs payment.url (ORDERMILL_PAYMENT__URL)".into(),
                )
            })?;
            Ok(Arc::new(http_gateway::HttpGateway::new(url, settings.timeout.get())?))
        }
    }
}

/// The notifier the settings ask for.
///
/// # Errors
/// When `webhook` is chosen without a URL, or the HTTP client cannot be built.
pub fn notifier(settings: &NotifySettings) -> Result<Arc<dyn Notifier>, IntegrationError> {
    match settings.notifier {
        NotifierKind::Log => Ok(Arc::new(log_notifier::LogNotifier)),
        NotifierKind::Webhook => {
            let url = settings.url.clone().ok_or_else(|| {
                IntegrationError(
                    "notify.notifier = \"webhook\" needs notify.url (ORDERMILL_NOTIFY__URL)".into(),
                )
            })?;
            Ok(Arc::new(webhook_notifier::WebhookNotifier::new(url, settings.timeout.get())?))
        }
    }
}

fn http_client(timeout: Duration) -> Result<reqwest::Client, IntegrationError> {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|e| IntegrationError(format!("cannot build the HTTP client: {e}")))
}
