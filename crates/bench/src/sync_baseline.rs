//! The synchronous baseline: the "before" design of the seed article, kept only to be measured
//! against ordermill.
//!
//! `POST /api/orders` parses the same order JSON as ordermill, then calls the inventory,
//! payment and notify services ONE AFTER ANOTHER over HTTP, inside the request, and answers 201
//! only when all three succeeded. Its latency is therefore at least the sum of theirs, its
//! throughput at most connections ÷ that sum, and a payment outage fails every order. Like the
//! design it reproduces, it does not compensate: stock taken by inventory stays taken when
//! payment then fails. Nothing is stored.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Serialize;

use crate::order_request::{Item, OrderRequest};
use serde_json::json;

use crate::stubs::Service;

// Every item of the bench catalog costs 19.99 (in minor units), as `bench run --setup` prices
// them in ordermill; the baseline has no catalog, so it charges the same figure.
const UNIT_PRICE_MINOR: u64 = 1999;

/// Where the baseline's downstream services are, and how long it waits for each call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncConfig {
    /// `POST` target of the stock reservation.
    pub inventory_url: String,
    /// `POST` target of the charge.
    pub payment_url: String,
    /// `POST` target of the customer notification.
    pub notify_url: String,
    /// Longest wait for one downstream call; after it the order fails with 503.
    pub call_timeout: Duration,
}

impl SyncConfig {
    /// The three services of a stub server (`ordermill bench stubs`) at `addr`.
    pub fn from_stubs(addr: SocketAddr, call_timeout: Duration) -> SyncConfig {
        let url = |service: Service| format!("http://{addr}/{service}");
        SyncConfig {
            inventory_url: url(Service::Inventory),
            payment_url: url(Service::Payment),
            notify_url: url(Service::Notify),
            call_timeout,
        }
    }
}

/// Why the baseline could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SyncBaselineError {
    /// The HTTP client for the downstream calls could not be built.
    #[error("cannot build the sync baseline's HTTP client")]
    Client(#[source] reqwest::Error),
    /// The listen address could not be bound, or serving failed.
    #[error("the sync baseline cannot serve")]
    Serve(#[source] std::io::Error),
}

#[derive(Serialize)]
struct Created<'a> {
    order_id: &'a str,
    status: &'static str,
    customer_id: &'a str,
    total: &'a str,
    items: &'a [Item],
}

struct Baseline {
    config: SyncConfig,
    client: reqwest::Client,
    seq: AtomicU64,
}

/// Why one downstream call did not succeed.
enum Failure {
    /// The service answered, with an error status.
    Answered(StatusCode),
    /// No answer: refused connection, reset, or the call timeout.
    NoAnswer(String),
}

impl Baseline {
    async fn call(&self, url: &str, body: serde_json::Value) -> Result<(), Failure> {
        let response = self
            .client
            .post(url)
            .json(&body)
            .send()
            .await
            .map_err(|error| Failure::NoAnswer(error.to_string()))?;
        let status = response.status();
        // Read to the end so the connection goes back to the pool for the next order.
        let _ = response.bytes().await;
        if status.is_success() { Ok(()) } else { Err(Failure::Answered(status)) }
    }
}

fn error(status: StatusCode, code: &str, message: String) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

/// A downstream failure as the baseline's answer: 502 when the service said no, 503 when it
/// did not answer at all.
fn failed(service: Service, failure: Failure) -> Response {
    match failure {
        Failure::Answered(status) => error(
            StatusCode::BAD_GATEWAY,
            &format!("{service}_failed"),
            format!("{service} answered {status}"),
        ),
        Failure::NoAnswer(why) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{service}_unavailable"),
            format!("{service} did not answer: {why}"),
        ),
    }
}

fn decimal(minor: u64) -> String {
    format!("{}.{:02}", minor / 100, minor % 100)
}

async fn create(State(baseline): State<Arc<Baseline>>, body: axum::body::Bytes) -> Response {
    let order = match serde_json::from_slice::<OrderRequest>(&body) {
        Ok(order) => order,
        Err(e) => return error(StatusCode::BAD_REQUEST, "malformed_json", e.to_string()),
    };
    if order.customer_id.is_empty() || order.items.is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            "an order needs a customer_id and at least one item".to_owned(),
        );
    }
    let units = order.items.iter().fold(0u64, |sum, i| sum.saturating_add(u64::from(i.quantity)));
    let total = decimal(units.saturating_mul(UNIT_PRICE_MINOR));
    let n = baseline.seq.fetch_add(1, Ordering::Relaxed);
    let order_id = format!("01a20000-0000-7000-8000-{n:012x}");

    // The "before" design: each step waits for the previous one, inside the request.
    let steps = [
        (
            Service::Inventory,
            &baseline.config.inventory_url,
            json!({"order_id": order_id, "items": order.items}),
        ),
        (
            Service::Payment,
            &baseline.config.payment_url,
            json!({"order_id": order_id, "customer_id": order.customer_id, "amount": total}),
        ),
        (
            Service::Notify,
            &baseline.config.notify_url,
            json!({"kind": "order.confirmed", "order_id": order_id, "customer_id": order.customer_id}),
        ),
    ];
    for (service, url, body) in steps {
        if let Err(failure) = baseline.call(url, body).await {
            return failed(service, failure);
        }
    }
    let created = Created {
        order_id: &order_id,
        status: "confirmed",
        customer_id: &order.customer_id,
        total: &total,
        items: &order.items,
    };
    (StatusCode::CREATED, axum::Json(created)).into_response()
}

/// The baseline's routes: `POST /api/orders`.
///
/// # Errors
/// [`SyncBaselineError::Client`] when the HTTP client cannot be built.
pub fn router(config: SyncConfig) -> Result<Router, SyncBaselineError> {
    let client = reqwest::Client::builder()
        .timeout(config.call_timeout)
        // The stubs are on 127.0.0.1; a proxy from the environment must not sit in between.
        .no_proxy()
        .tcp_nodelay(true)
        .build()
        .map_err(SyncBaselineError::Client)?;
    let baseline = Baseline { config, client, seq: AtomicU64::new(0) };
    Ok(Router::new().route("/api/orders", post(create)).with_state(Arc::new(baseline)))
}

/// Serves the baseline on `listen` until `shutdown` completes.
///
/// # Errors
/// [`SyncBaselineError::Client`] as for [`router`], [`SyncBaselineError::Serve`] when the
/// address cannot be bound or serving fails.
pub async fn serve(
    listen: SocketAddr,
    config: SyncConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), SyncBaselineError> {
    let router = router(config)?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(SyncBaselineError::Serve)?;
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(SyncBaselineError::Serve)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_are_decimal_strings_with_two_places() {
        assert_eq!(decimal(1999), "19.99");
        assert_eq!(decimal(5), "0.05");
        assert_eq!(decimal(3 * UNIT_PRICE_MINOR), "59.97");
    }

    #[test]
    fn the_stub_urls_name_each_service() {
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        let config = SyncConfig::from_stubs(addr, Duration::from_secs(1));
        assert_eq!(config.payment_url, "http://127.0.0.1:9/payment");
        assert_eq!(config.inventory_url, "http://127.0.0.1:9/inventory");
        assert_eq!(config.notify_url, "http://127.0.0.1:9/notify");
    }
}
