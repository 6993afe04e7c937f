//! The downstream stubs behind `ordermill bench stubs`: an inventory service, a payment gateway
//! and a notifier, each a `POST` that sleeps a fixed latency and answers 200.
//!
//! They stand in for the slow services of the seed article, so that the synchronous baseline
//! (which calls them one after another inside the request) and ordermill (which calls payment
//! and notify behind the bus) meet the same latencies. Payment can fail a share of charges
//! with 503, and any service can be taken down and brought back at run time
//! (`POST /admin/down/{service}`, `POST /admin/up/{service}`) to test fault isolation; a down
//! service answers 503 at once, like a load balancer with no healthy backend.
//!
//! Routes: `POST /inventory`, `POST /payment`, `POST /notify`, `POST /admin/down/{service}`,
//! `POST /admin/up/{service}`, `GET /admin/stats`.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;

/// The address `ordermill bench stubs` listens on by default.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8090";

/// One of the stubbed downstream services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    /// `POST /inventory`: stock of record.
    Inventory,
    /// `POST /payment`: the payment gateway.
    Payment,
    /// `POST /notify`: the customer notifier.
    Notify,
}

impl Service {
    /// Every service, in the order the synchronous design calls them.
    pub const ALL: [Service; 3] = [Service::Inventory, Service::Payment, Service::Notify];

    /// The service's name, which is also its path (`/inventory`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Inventory => "inventory",
            Service::Payment => "payment",
            Service::Notify => "notify",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Service {
    type Err = String;

    fn from_str(name: &str) -> Result<Service, String> {
        Service::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| format!("no service named {name:?}; use inventory, payment or notify"))
    }
}

/// How the stubs behave: a latency per service and the share of failing charges.
#[derive(Debug, Clone, Copy, PartialEq, clap::Args)]
pub struct StubConfig {
    /// How long `POST /inventory` takes, e.g. 200ms.
    #[arg(long, value_name = "TIME", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub inventory_latency: Duration,
    /// How long `POST /payment` takes, e.g. 300ms.
    #[arg(long, value_name = "TIME", default_value = "300ms", value_parser = humantime::parse_duration)]
    pub payment_latency: Duration,
    /// How long `POST /notify` takes, e.g. 150ms.
    #[arg(long, value_name = "TIME", default_value = "150ms", value_parser = humantime::parse_duration)]
    pub notify_latency: Duration,
    /// Share of charges (0 to 1) that payment answers with 503 after its latency: a transient
    /// failure, which ordermill retries and the synchronous design passes on to its client.
    #[arg(long, value_name = "SHARE", default_value_t = 0.0, value_parser = parse_share)]
    pub payment_fail_rate: f64,
}

impl Default for StubConfig {
    /// The seed article's figures: 200 + 300 + 150 = 650 ms per synchronous order.
    fn default() -> Self {
        StubConfig {
            inventory_latency: Duration::from_millis(200),
            payment_latency: Duration::from_millis(300),
            notify_latency: Duration::from_millis(150),
            payment_fail_rate: 0.0,
        }
    }
}

impl StubConfig {
    /// The latency of `service`.
    pub fn latency(&self, service: Service) -> Duration {
        match service {
            Service::Inventory => self.inventory_latency,
            Service::Payment => self.payment_latency,
            Service::Notify => self.notify_latency,
        }
    }

    /// The three latencies added up: what one synchronous order waits at least.
    pub fn total_latency(&self) -> Duration {
        Service::ALL.into_iter().map(|s| self.latency(s)).sum()
    }

    /// Refuses a failure share outside 0 to 1 (including NaN).
    ///
    /// # Errors
    /// A message naming `--payment-fail-rate`.
    pub fn check(&self) -> Result<(), String> {
        parse_share(&self.payment_fail_rate.to_string()).map(drop)
    }
}

fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("--payment-fail-rate must be a number from 0 to 1, got {text:?}")),
    }
}

/// Requests one service has answered, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStats {
    /// Answered 200.
    pub ok: u64,
    /// Answered 503 by the configured failure share.
    pub failed: u64,
    /// Answered 503 because the service was down.
    pub refused_down: u64,
}

/// What every service has answered since the stubs started (`GET /admin/stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StubStats {
    /// `POST /inventory`.
    pub inventory: ServiceStats,
    /// `POST /payment`.
    pub payment: ServiceStats,
    /// `POST /notify`.
    pub notify: ServiceStats,
}

impl StubStats {
    /// The counts of `service`.
    pub fn service(&self, service: Service) -> ServiceStats {
        match service {
            Service::Inventory => self.inventory,
            Service::Payment => self.payment,
            Service::Notify => self.notify,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    down: AtomicBool,
    ok: AtomicU64,
    failed: AtomicU64,
    refused_down: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    config: StubConfig,
    services: [Counters; 3],
}

/// The stubs' shared state: their configuration, which services are down, and the counts.
/// Clones share the same state, so a handle kept by the caller sees what the router does.
#[derive(Debug, Clone)]
pub struct Stubs {
    inner: Arc<Inner>,
}

impl Stubs {
    /// Stubs behaving as `config` says, every service up.
    pub fn new(config: StubConfig) -> Stubs {
        Stubs { inner: Arc::new(Inner { config, services: Default::default() }) }
    }

    /// The routes, serving this state.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/inventory", post(inventory))
            .route("/payment", post(payment))
            .route("/notify", post(notify))
            .route("/admin/down/{service}", post(down))
            .route("/admin/up/{service}", post(up))
            .route("/admin/stats", get(stats))
            .with_state(self.clone())
    }

    /// Takes `service` down (it answers 503 at once) or brings it back up.
    pub fn set_down(&self, service: Service, down: bool) {
        self.counters(service).down.store(down, Ordering::Relaxed);
    }

    /// Whether `service` is down.
    pub fn is_down(&self, service: Service) -> bool {
        self.counters(service).down.load(Ordering::Relaxed)
    }

    /// The counts so far.
    pub fn stats(&self) -> StubStats {
        let of = |service| {
            let c = self.counters(service);
            ServiceStats {
                ok: c.ok.load(Ordering::Relaxed),
                failed: c.failed.load(Ordering::Relaxed),
                refused_down: c.refused_down.load(Ordering::Relaxed),
            }
        };
        StubStats {
            inventory: of(Service::Inventory),
            payment: of(Service::Payment),
            notify: of(Service::Notify),
        }
    }

    fn counters(&self, service: Service) -> &Counters {
        &self.inner.services[service.index()]
    }

    /// One call to `service`: refused at once when down, otherwise answered after its latency.
    async fn answer(&self, service: Service, may_fail: bool) -> Response {
        let counters = self.counters(service);
        if counters.down.load(Ordering::Relaxed) {
            counters.refused_down.fetch_add(1, Ordering::Relaxed);
            return unavailable(service, "down");
        }
        tokio::time::sleep(self.inner.config.latency(service)).await;
        // Drawn after the sleep: a failing gateway still takes its time to say so.
        if may_fail && fastrand::f64() < self.inner.config.payment_fail_rate {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            return unavailable(service, "failed");
        }
        counters.ok.fetch_add(1, Ordering::Relaxed);
        (StatusCode::OK, axum::Json(json!({"ok": true}))).into_response()
    }
}

fn unavailable(service: Service, code: &'static str) -> Response {
    let message = match code {
        "down" => format!("{service} is down (POST /admin/up/{service} brings it back)"),
        _ => format!("{service} failed transiently; retry"),
    };
    let body = json!({"error": {"code": code, "message": message}});
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

// The bodies are taken (and dropped) so that hyper has read each request to its end and can
// keep the connection for the next one; what they say does not change the answer.
async fn inventory(State(stubs): State<Stubs>, _body: axum::body::Bytes) -> Response {
    stubs.answer(Service::Inventory, false).await
}

async fn payment(State(stubs): State<Stubs>, _body: axum::body::Bytes) -> Response {
    stubs.answer(Service::Payment, true).await
}

async fn notify(State(stubs): State<Stubs>, _body: axum::body::Bytes) -> Response {
    stubs.answer(Service::Notify, false).await
}

async fn down(State(stubs): State<Stubs>, Path(name): Path<String>) -> Response {
    toggle(&stubs, &name, true)
}

async fn up(State(stubs): State<Stubs>, Path(name): Path<String>) -> Response {
    toggle(&stubs, &name, false)
}

fn toggle(stubs: &Stubs, name: &str, down: bool) -> Response {
    match name.parse::<Service>() {
        Ok(service) => {
            stubs.set_down(service, down);
            tracing::info!(service = %service, down, "A stub service was toggled.");
            axum::Json(json!({"service": service, "down": down})).into_response()
        }
        Err(message) => {
            let body = json!({"error": {"code": "unknown_service", "message": message}});
            (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
        }
    }
}

async fn stats(State(stubs): State<Stubs>) -> Response {
    axum::Json(stubs.stats()).into_response()
}

/// The stubs' routes with fresh state (every service up). Keep a [`Stubs`] and call
/// [`Stubs::router`] instead to toggle services or read counts in-process.
pub fn router(config: StubConfig) -> Router {
    Stubs::new(config).router()
}

/// Serves the stubs on `listen` until `shutdown` completes.
///
/// # Errors
/// When the address cannot be bound or serving fails.
pub async fn serve(
    listen: SocketAddr,
    config: StubConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(
        listen = %listener.local_addr()?,
        inventory_ms = config.inventory_latency.as_millis(),
        payment_ms = config.payment_latency.as_millis(),
        notify_ms = config.notify_latency.as_millis(),
        payment_fail_rate = config.payment_fail_rate,
        "Stub services are serving POST /inventory, /payment and /notify."
    );
    axum::serve(listener, router(config)).with_graceful_shutdown(shutdown).await
}

/// The flags of `ordermill bench stubs`.
#[derive(Debug, Clone, clap::Args)]
pub struct StubsArgs {
    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Latencies and failures.
    #[command(flatten)]
    pub config: StubConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_round_trip_and_unknown_ones_are_refused() {
        for service in Service::ALL {
            assert_eq!(service.as_str().parse::<Service>(), Ok(service));
        }
        assert!("billing".parse::<Service>().unwrap_err().contains("inventory, payment"));
    }

    #[test]
    fn a_failure_share_outside_zero_to_one_is_refused() {
        for bad in ["-0.1", "1.5", "NaN", "lots"] {
            assert!(parse_share(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_share("0.25"), Ok(0.25));
        let config = StubConfig { payment_fail_rate: f64::NAN, ..StubConfig::default() };
        assert!(config.check().is_err());
        assert!(StubConfig::default().check().is_ok());
    }

    #[test]
    fn the_default_latencies_add_up_to_the_articles_650_ms() {
        assert_eq!(StubConfig::default().total_latency(), Duration::from_millis(650));
    }
}
