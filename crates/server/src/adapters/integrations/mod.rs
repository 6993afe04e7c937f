//! The outside world the consumers talk to: payment gateways and notifiers, one module per
//! implementation, chosen by configuration.

pub mod http_gateway;
pub mod log_notifier;
pub mod signature;
pub mod simulated_gateway;
pub mod webhook_notifier;

use std::sync::Arc;
use std::time::Duration;

use ordermill_core::ports::{Notifier, PaymentGateway};
use ordermill_core::{Clock, redact_url};

use crate::startup::settings::{
    GatewayKind, NotifierKind, NotifySettings, PaymentSettings, SecretUrl,
};

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
    if settings.mode == crate::startup::settings::PaymentMode::AwaitCallback {
        tracing::info!(
            mode = "await_callback",
            pay_within = %settings.pay_within,
            "Pay later: orders wait for the provider's signed callback (POST /api/payments/callback) and are cancelled unpaid after payment.pay_within."
        );
    }
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
            let client =
                http_client(settings.timeout.get(), "payment", settings.ca_file.as_deref())?;
            warn_if_plaintext("payment.url", &url);
            tracing::info!(gateway = "http", url = %url, timeout_ms = settings.timeout.get().as_millis() as u64, "Payments go to an HTTP gateway.");
            Ok(Arc::new(http_gateway::HttpGateway::new(url, client)))
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
            let client =
                http_client(settings.timeout.get(), "notify", settings.ca_file.as_deref())?;
            warn_if_plaintext("notify.url", &url);
            let signed = settings.webhook_secret.is_some();
            tracing::info!(notifier = "webhook", url = %url, signed, "Notifications go to a webhook.");
            if !signed {
                tracing::warn!(
                    "Webhooks go out unsigned: set notify.webhook_secret (ORDERMILL_NOTIFY__WEBHOOK_SECRET) so receivers can tell them from forgeries."
                );
            }
            Ok(Arc::new(webhook_notifier::WebhookNotifier::new(
                url,
                client,
                settings.webhook_secret.clone(),
                clock,
            )))
        }
    }
}

/// Warns once at start when `url` sends requests in the clear to another machine.
fn warn_if_plaintext(key: &str, url: &SecretUrl) {
    if in_clear_to_another_host(url.expose()) {
        tracing::warn!(setting = key, url = %url, "An outside service is called over plain http:// on another host: its requests cross the network unencrypted. Use its https:// URL.");
    }
}

/// Whether `url` is `http://` to a host other than this one: a charge's body, its idempotency
/// key and the URL's own credentials would cross the network readable. Loopback is not (a
/// local TLS proxy, a test stub).
fn in_clear_to_another_host(url: &str) -> bool {
    let Ok(parsed) = reqwest::Url::parse(url) else { return false };
    let host = parsed.host_str().unwrap_or("").trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    parsed.scheme() == "http" && !loopback
}

/// The client for one outside service (`settings` names its section: `payment`, `notify`):
/// TLS verified against the system's certificate authorities and those in `ca_file`.
///
/// No redirect is followed: a followed 302 or 303 turns the POST into a GET of another URL
/// (whose 200 would read as a charge made), and a 307 would send the charge, its
/// idempotency key and signature wherever the answer points. A redirect is answered as a
/// refusal instead ([`ordermill_core::outside::definite_refusal`], [`refusal`]).
///
/// # Errors
/// When `ca_file` cannot be read or holds no PEM certificate, or the client cannot be built.
pub fn http_client(
    timeout: Duration,
    settings: &str,
    ca_file: Option<&std::path::Path>,
) -> Result<reqwest::Client, IntegrationError> {
    let mut builder =
        reqwest::Client::builder().timeout(timeout).redirect(reqwest::redirect::Policy::none());
    if let Some(path) = ca_file {
        let shown = path.display();
        let pem = std::fs::read(path).map_err(|e| {
            IntegrationError(format!("{settings}.ca_file = {shown}: cannot read it: {e}"))
        })?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            IntegrationError(format!("{settings}.ca_file = {shown}: not a PEM certificate: {e}"))
        })?;
        if certificates.is_empty() {
            return Err(IntegrationError(format!(
                "{settings}.ca_file = {shown} holds no certificate: it should hold one or more \
                 \"-----BEGIN CERTIFICATE-----\" blocks (PEM)"
            )));
        }
        builder = builder.tls_certs_merge(certificates);
    }
    builder.build().map_err(|e| {
        let mut text = format!("cannot build the HTTP client for {settings}: {e}");
        let mut cause = std::error::Error::source(&e);
        while let Some(next) = cause {
            text.push_str(": ");
            text.push_str(&next.to_string());
            cause = next.source();
        }
        IntegrationError(text)
    })
}

/// `"POST {url}: ..."` for a call that got no answer: the URL masked, and what went wrong in
/// words an operator can act on (reqwest's own text is "error sending request" for most).
fn unanswered(url: &SecretUrl, settings: &str, error: &reqwest::Error) -> String {
    let what = if error.is_timeout() {
        format!("no answer within {settings}.timeout")
    } else if error.is_connect() {
        "cannot connect".to_owned()
    } else {
        "the call failed".to_owned()
    };
    let mut text = format!("POST {url}: {what}");
    // The causes (hyper's, the OS's, rustls's) name no URL; the error itself would, so it is
    // left out.
    let mut cause = std::error::Error::source(error);
    let mut certificate = false;
    while let Some(next) = cause {
        let said = next.to_string();
        certificate |= said.contains("certificate");
        text.push_str(": ");
        text.push_str(&said);
        cause = next.source();
    }
    if certificate {
        text.push_str(&format!(
            " (the TLS certificate was not accepted: if a private CA signed it, set \
             {settings}.ca_file to that CA's PEM file)"
        ));
    }
    text
}

/// `"{who} answered {status}"` for an answer that is not a success; for a redirect, also where
/// it points, masked like every URL shown, and that `key` should name that URL instead.
fn refusal(who: &str, key: &str, response: &reqwest::Response) -> String {
    let status = response.status();
    if !status.is_redirection() {
        return format!("{who} answered {status}");
    }
    let target = response
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|location| location.to_str().ok())
        // Resolved against the URL called, so a relative one is masked like an absolute one.
        .and_then(|location| response.url().join(location).ok())
        .map(|url| redact_url(url.as_str()).chars().take(300).collect::<String>());
    let to = target.map_or_else(String::new, |url| format!(" to {url}"));
    format!(
        "{who} answered {status}, a redirect{to}, which ordermill does not follow: set {key} to \
         the URL that takes the request"
    )
}

/// Warns, once at start, about an HTTP gateway or webhook that does not accept a connection
/// now: a worker then still starts (its charges and notifications wait and are retried), but
/// the operator learns at once that `payment.url` / `notify.url` is wrong or the service down,
/// not after the first orders have been retried for an hour. Runs in the background.
pub fn warn_if_unreachable(payment: &PaymentSettings, notify: &NotifySettings) {
    let mut targets = Vec::new();
    if let (GatewayKind::Http, Some(url)) = (payment.gateway, &payment.url) {
        targets.push(("payment.url", url.clone()));
    }
    if let (NotifierKind::Webhook, Some(url)) = (notify.notifier, &notify.url) {
        targets.push(("notify.url", url.clone()));
    }
    if targets.is_empty() {
        return;
    }
    tokio::spawn(async move {
        for (key, url) in targets {
            if let Err(why) = connects(url.expose()).await {
                tracing::warn!(setting = key, url = %url, reason = %why, "An outside service is unreachable now; its calls wait and are retried. Check the URL and the service.");
            }
        }
    });
}

/// Whether a TCP connection to `url`'s host and port opens within 3 s.
async fn connects(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
    let host = parsed.host_str().ok_or("the URL has no host")?.to_owned();
    let port = parsed.port_or_known_default().ok_or("the URL has no port")?;
    match tokio::time::timeout(Duration::from_secs(3), tokio::net::TcpStream::connect((host, port)))
        .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(error)) => Err(error.to_string()),
        Err(_) => Err("no answer within 3 s".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_taken_and_a_bad_ca_file_stops_the_start_naming_the_setting() {
        let payment = |ca_file: Option<&std::path::Path>| PaymentSettings {
            gateway: GatewayKind::Http,
            url: Some(SecretUrl::new("https://pay:pw@payments.example.com/charge")),
            ca_file: ca_file.map(std::path::Path::to_path_buf),
            ..PaymentSettings::default()
        };
        assert!(payment_gateway(&payment(None)).is_ok(), "an https:// gateway is taken");

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let Err(error) = payment_gateway(&payment(Some(&missing))) else {
            panic!("a CA file that is not there was accepted")
        };
        assert!(
            error.0.starts_with("payment.ca_file = ") && error.0.contains("cannot read"),
            "{error}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let notify = NotifySettings {
            notifier: NotifierKind::Webhook,
            url: Some(SecretUrl::new("https://hooks.example.com/x?token=t")),
            ca_file: Some(empty),
            ..NotifySettings::default()
        };
        let Err(error) = notifier(&notify, Arc::new(ordermill_core::SystemClock)) else {
            panic!("a CA file without a certificate was accepted")
        };
        assert!(
            error.0.starts_with("notify.ca_file = ") && error.0.contains("BEGIN CERTIFICATE"),
            "{error}"
        );
    }

    #[test]
    fn plain_http_is_flagged_only_when_it_leaves_the_machine() {
        assert!(in_clear_to_another_host("http://payments.example.com/charge"));
        assert!(in_clear_to_another_host("http://10.0.0.7:8080/charge"));
        assert!(!in_clear_to_another_host("https://payments.example.com/charge"));
        assert!(!in_clear_to_another_host("http://127.0.0.1:9000/charge"));
        assert!(!in_clear_to_another_host("http://localhost:9000/charge"));
        assert!(!in_clear_to_another_host("http://[::1]:9000/charge"));
    }
}
