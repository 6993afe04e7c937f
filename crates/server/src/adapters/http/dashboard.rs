//! `/dashboard`: a live operations page, and `/admin/overview`, the JSON it polls.
//!
//! The page's files are compiled into the binary (`assets/dashboard/`): no CDN, nothing
//! fetched at build or run time, and the page shell holds no data, so it is served without a
//! credential. Everything it shows comes from `/admin/overview` and every action it takes
//! goes through the admin API, both with the admin token the operator types in (or passes as
//! `#token=` in the URL, which never reaches a server log).
//!
//! The overview is cheap whatever the store holds: counters and latency come from the
//! Prometheus recorder (this process's, plus `dashboard.peers`' `/metrics`), recent orders
//! and open deals are bounded index scans, dead letters the first page of each queue.

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ordermill_core::ports::{DeadLetterPage, OrderFilter, OrderQuery};
use ordermill_core::{Order, UnixMillis, redact_url};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::admin::Admin;
use super::deals::DealView;
use super::orders::OrderView;
use crate::telemetry::scrape::{Scrape, StockFaults, Totals, quantile};

/// Recent orders shown.
const RECENT_ORDERS: u32 = 25;
/// Open deals shown (the soonest to close).
const OPEN_DEALS: usize = 20;
/// Dead letters shown per queue.
const DEAD_LETTERS_PER_QUEUE: usize = 20;
/// How far back "recent" looks: a quiet shop's last orders may be days old.
const RECENT_WITHIN_MS: i64 = 30 * 86_400_000;
/// A peer that does not answer within this long is shown as down, not waited for.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

const PAGE: &str = include_str!("../../../assets/dashboard/index.html");
const SCRIPT: &str = include_str!("../../../assets/dashboard/app.js");
const STYLE: &str = include_str!("../../../assets/dashboard/app.css");

/// Other nodes whose `/metrics` the overview adds in: in the scaled-out mode the consumers'
/// counters (confirmed, consumer outcomes) live in the workers' processes.
#[derive(Clone)]
pub struct Peers {
    urls: Vec<String>,
    client: reqwest::Client,
}

impl Peers {
    /// Peers at `urls` (base URLs: a worker's `--metrics-listen`, another api node).
    ///
    /// # Errors
    /// When the HTTP client cannot be built.
    pub fn new(urls: Vec<String>) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder().timeout(PEER_TIMEOUT).build()?;
        let urls = urls.into_iter().map(|u| u.trim_end_matches('/').to_owned()).collect();
        Ok(Peers { urls, client })
    }
}

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/dashboard", get(|| async { asset(PAGE, "text/html; charset=utf-8") }))
        .route(
            "/dashboard/app.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route("/dashboard/app.css", get(|| async { asset(STYLE, "text/css; charset=utf-8") }))
        .route("/admin/overview", get(overview))
}

/// A page file, with headers that keep it to this origin's scripts and out of frames.
fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
             img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// A node whose metrics are in the overview.
#[derive(Serialize, ToSchema)]
struct NodeView {
    /// `self` for the node answering, else the peer's URL.
    node: String,
    ok: bool,
    /// Why a peer's metrics are missing.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    error: Option<String>,
}

/// Latency percentiles from a histogram: each the bucket bound under which that share of
/// observations fall, in seconds; `null` before any observation, `"+Inf"` beyond the last
/// bucket (2.5 s).
#[derive(Serialize, ToSchema)]
struct Percentiles {
    count: u64,
    #[schema(value_type = super::openapi::Bound)]
    p50: serde_json::Value,
    #[schema(value_type = super::openapi::Bound)]
    p90: serde_json::Value,
    #[schema(value_type = super::openapi::Bound)]
    p99: serde_json::Value,
}

fn percentiles(buckets: &std::collections::BTreeMap<String, f64>) -> Percentiles {
    let bound = |q| match quantile(buckets, q) {
        None => serde_json::Value::Null,
        Some(s) if s.is_infinite() => serde_json::Value::from("+Inf"),
        Some(s) => serde_json::Value::from(s),
    };
    let count = buckets.get("+Inf").copied().unwrap_or(0.0);
    Percentiles {
        // Counts are whole numbers carried as f64 by the text format.
        count: if count.is_finite() && count > 0.0 { count as u64 } else { 0 },
        p50: bound(0.5),
        p90: bound(0.9),
        p99: bound(0.99),
    }
}

/// Accept→confirmed and intake latency.
#[derive(Serialize, ToSchema)]
struct Latency {
    accept_to_confirm: Percentiles,
    intake: Percentiles,
}

/// A consumer's messages by outcome, since its process started.
#[derive(Serialize, ToSchema)]
struct ConsumerView {
    queue: String,
    ack: u64,
    retry: u64,
    dead: u64,
}

/// A queue's counts now.
#[derive(Serialize, ToSchema)]
struct QueueView {
    queue: String,
    ready: u64,
    delayed: u64,
    in_flight: u64,
    dead: u64,
}

/// A dead letter, without its payload (the admin API lists those).
#[derive(Serialize, ToSchema)]
struct DeadLetterView {
    queue: String,
    event_id: String,
    #[schema(nullable = true)]
    order_id: Option<String>,
    routing_key: String,
    attempts: u32,
    error: String,
    #[schema(value_type = super::openapi::Instant)]
    died_at: UnixMillis,
}

/// A part of the overview that could not be read, and why; the rest is still shown.
#[derive(Serialize, ToSchema)]
struct Unavailable {
    part: &'static str,
    error: String,
}

/// Everything the dashboard shows, at one moment.
#[derive(Serialize, ToSchema)]
struct Overview<'a> {
    #[schema(value_type = super::openapi::Instant)]
    generated_at: UnixMillis,
    nodes: Vec<NodeView>,
    /// Order counters since the nodes started (rates are the difference between two polls).
    totals: OrderTotals,
    /// Intake refusals by error code.
    #[schema(value_type = std::collections::BTreeMap<String, u64>)]
    rejected_by_reason: std::collections::BTreeMap<String, u64>,
    /// The shared hot-stock counts' faults since the nodes started: all 0 on `serve`, whose
    /// counts live in its own memory.
    hot_stock: HotStock,
    latency: Latency,
    consumers: Vec<ConsumerView>,
    queues: Vec<QueueView>,
    dead_letters: Vec<DeadLetterView>,
    /// Open deals, the soonest to close first.
    #[schema(value_type = Vec<super::openapi::Deal>)]
    deals: Vec<DealView<'a>>,
    /// The newest orders.
    #[schema(value_type = Vec<super::openapi::Order>)]
    recent_orders: Vec<OrderView<'a>>,
    /// Parts that could not be read.
    unavailable: Vec<Unavailable>,
}

/// Order counters, whole numbers (the scrape reads them as Prometheus' floats).
#[derive(Serialize, ToSchema)]
struct OrderTotals {
    accepted: u64,
    confirmed: u64,
    cancelled: u64,
    rejected: u64,
    shed: u64,
}

impl OrderTotals {
    fn new(totals: &Totals) -> OrderTotals {
        OrderTotals {
            accepted: count(totals.accepted),
            confirmed: count(totals.confirmed),
            cancelled: count(totals.cancelled),
            rejected: count(totals.rejected),
            shed: count(totals.shed),
        }
    }
}

/// Rebuilds of the shared hot-stock counts and the orders they touched (docs/OPERATIONS.md,
/// "Redis loses its data").
#[derive(Serialize, ToSchema)]
struct HotStock {
    /// Times the counts were rebuilt from the store.
    rebuilds: u64,
    /// Orders answered 503 unwritten: reserved under counts set anew since.
    fenced_orders: u64,
    /// Commits that landed after the counts were set anew, each marking them for a rebuild.
    late_commits: u64,
}

impl HotStock {
    fn new(faults: &StockFaults) -> HotStock {
        HotStock {
            rebuilds: count(faults.rebuilds),
            fenced_orders: count(faults.fenced_orders),
            late_commits: count(faults.late_commits),
        }
    }
}

/// A scraped counter as a count: a missing or garbled value reads as none.
fn count(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 { value as u64 } else { 0 }
}

#[utoipa::path(
    get,
    path = "/admin/overview",
    tag = "admin",
    summary = "What the dashboard shows: counters, latency, queues, dead letters, deals, recent orders",
    responses(
        (status = 200, description = "A snapshot; parts that could not be read are listed in `unavailable`", body = Overview),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorBody),
        (status = 404, description = "admin_disabled", body = super::openapi::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub(super) async fn overview(State(state): State<AppState>, _: Admin) -> Response {
    let now = state.deals.now();
    let mut unavailable = Vec::new();
    let mut scrape = Scrape::parse(&state.metrics.render());
    let mut nodes = vec![NodeView { node: "self".into(), ok: true, error: None }];
    for url in &state.peers.urls {
        match scrape_peer(&state.peers.client, url).await {
            Ok(peer) => {
                scrape.merge(peer);
                nodes.push(NodeView { node: redact_url(url), ok: true, error: None });
            }
            Err(error) => {
                nodes.push(NodeView { node: redact_url(url), ok: false, error: Some(error) });
            }
        }
    }

    let mut queues = Vec::new();
    let mut dead_letters = Vec::new();
    match state.bus.depths().await {
        Ok(depths) => {
            for (queue, depth) in depths {
                if depth.dead > 0 {
                    match state
                        .bus
                        .dead_letters(&queue, DeadLetterPage::first(DEAD_LETTERS_PER_QUEUE))
                        .await
                    {
                        Ok(dead) => dead_letters.extend(dead.into_iter().map(|d| DeadLetterView {
                            queue: queue.clone(),
                            event_id: d.envelope.event_id.to_string(),
                            order_id: d.order_id(),
                            routing_key: d.envelope.routing_key.to_string(),
                            attempts: d.attempts,
                            error: d.error,
                            died_at: d.died_at,
                        })),
                        Err(error) => unavailable
                            .push(Unavailable { part: "dead_letters", error: error.to_string() }),
                    }
                }
                queues.push(QueueView {
                    queue,
                    ready: depth.ready,
                    delayed: depth.delayed,
                    in_flight: depth.in_flight,
                    dead: depth.dead,
                });
            }
        }
        Err(error) => unavailable.push(Unavailable { part: "queues", error: error.to_string() }),
    }

    let deals = state.deals.open_soonest(OPEN_DEALS).await.unwrap_or_else(|error| {
        unavailable.push(Unavailable { part: "deals", error: error.to_string() });
        Vec::new()
    });
    let recent = state
        .store
        .find_orders(OrderQuery {
            filter: OrderFilter::Any,
            since: UnixMillis(now.0.saturating_sub(RECENT_WITHIN_MS)),
            until: now,
            before: None,
            limit: RECENT_ORDERS,
        })
        .await
        .unwrap_or_else(|error| {
            unavailable.push(Unavailable { part: "recent_orders", error: error.to_string() });
            Vec::<Order>::new()
        });

    let mut consumers = std::collections::BTreeMap::<&str, ConsumerView>::new();
    for ((queue, outcome), n) in &scrape.consumer_messages {
        let view = consumers.entry(queue).or_insert_with(|| ConsumerView {
            queue: queue.clone(),
            ack: 0,
            retry: 0,
            dead: 0,
        });
        match outcome.as_str() {
            "ack" => view.ack += count(*n),
            "retry" => view.retry += count(*n),
            "dead" => view.dead += count(*n),
            _ => {}
        }
    }
    let overview = Overview {
        generated_at: now,
        nodes,
        totals: OrderTotals::new(&scrape.totals),
        rejected_by_reason: scrape
            .rejected_by_reason
            .iter()
            .map(|(reason, n)| (reason.clone(), count(*n)))
            .collect(),
        hot_stock: HotStock::new(&scrape.stock),
        latency: Latency {
            accept_to_confirm: percentiles(&scrape.confirm_buckets),
            intake: percentiles(&scrape.intake_buckets),
        },
        consumers: consumers.into_values().collect(),
        queues,
        dead_letters,
        deals: deals.iter().map(|d| DealView::new(d, now)).collect(),
        recent_orders: recent.iter().map(OrderView::from).collect(),
        unavailable,
    };
    let mut response = axum::Json(overview).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

async fn scrape_peer(client: &reqwest::Client, url: &str) -> Result<Scrape, String> {
    let reply = client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .map_err(|e| format!("no answer: {}", e.without_url()))?;
    if !reply.status().is_success() {
        return Err(format!("/metrics answered {}", reply.status()));
    }
    let text = reply.text().await.map_err(|e| format!("unreadable: {}", e.without_url()))?;
    Ok(Scrape::parse(&text))
}
