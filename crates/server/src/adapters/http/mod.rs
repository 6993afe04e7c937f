//! The HTTP API: one module per noun, each owning its routes; [`error`] maps every failure
//! to a status and a JSON body.

pub mod admin;
pub mod admin_orders;
pub mod auth;
pub mod body;
pub mod dashboard;
pub mod deals;
pub mod error;
pub mod health;
pub mod messages;
pub mod metrics;
pub mod openapi;
pub mod orders;
pub mod payments;
pub mod products;
pub mod rate_limit;
pub mod reports;
pub mod serve;
pub mod starting;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::PrometheusHandle;
use ordermill_core::ports::{EventBus, OrderStore};
use tower_http::catch_panic::CatchPanicLayer;

use self::error::ApiError;
use crate::services::catalog::Catalog;
use crate::services::intake::Intake;
use crate::services::order_cache::OrderCache;
use crate::startup::settings::HttpSettings;

/// What handlers share. axum clones the state for every request, so it is one `Arc`:
/// cloning seven fields per request showed in the profile.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Wraps the shared parts.
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The parts of [`AppState`].
pub struct Shared {
    /// Order intake.
    pub intake: Arc<Intake>,
    /// Products.
    pub catalog: Arc<Catalog>,
    /// The store, for reads.
    pub store: Arc<dyn OrderStore>,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// The bus, for the admin API.
    pub bus: Arc<dyn EventBus>,
    /// Recently changed and final orders.
    pub order_cache: OrderCache,
    /// Group buying.
    pub deals: Arc<crate::services::deals::Deals>,
    /// Per-customer purchase limits (shown and set with products).
    pub purchase_limits: Arc<crate::services::purchase_limits::PurchaseLimits>,
    /// Merchant, admin and customer credentials.
    pub auth: Arc<auth::Auth>,
    /// Per-client request budgets; `None` when `rate_limit` is off.
    pub rate_limit: Option<rate_limit::RateLimit>,
    /// Operators' actions on orders.
    pub order_admin: Arc<crate::adapters::workers::order_admin::OrderAdmin>,
    /// Payment callbacks; `None` unless `payment.mode = "await_callback"`.
    pub callbacks: Option<payments::Callbacks>,
    /// Nodes whose metrics the dashboard adds in (`dashboard.peers`).
    pub peers: dashboard::Peers,
    /// Reports (报表).
    pub reports: Arc<crate::services::reports::Reports>,
}

/// The whole API.
pub fn router(state: AppState, http_limits: &HttpSettings) -> Router {
    let limited = state.rate_limit.is_some();
    let limits = axum::middleware::from_fn_with_state(state.clone(), rate_limit::limit);
    let timed = Router::new()
        .merge(orders::reads())
        .merge(products::router())
        .merge(deals::router())
        .merge(health::router())
        .merge(metrics::router())
        .merge(admin::router())
        .merge(admin_orders::router())
        .merge(dashboard::router())
        .merge(reports::router())
        .layer(axum::middleware::from_fn_with_state(
            http_limits.request_timeout.get(),
            request_timeout,
        ));
    let router = Router::new()
        .merge(timed)
        .merge(orders::writes(http_limits.max_batch_body_bytes))
        .merge(deals::joins())
        .merge(payments::router())
        .fallback(|| async { ApiError::no_route() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method",
            )
        });
    // Off (the default), the limit costs the hot path nothing, not even a layer.
    let router = if limited { router.layer(limits) } else { router };
    router
        .layer(DefaultBodyLimit::max(http_limits.max_body_bytes))
        .layer(CatchPanicLayer::custom(panic_response))
        // Outermost, so every error answer (a panic's, a timeout's, a 429) is in the client's
        // language.
        .layer(axum::middleware::from_fn(messages::negotiate))
        .with_state(state)
        .merge(openapi::router())
}

/// `http.request_timeout` on the routes that write nothing: 503 `timeout` with a JSON body
/// and `Retry-After`, as every 503.
async fn request_timeout(
    axum::extract::State(limit): axum::extract::State<std::time::Duration>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::unavailable(
            "timeout",
            format!("no answer within http.request_timeout ({limit:?}); retry shortly"),
            1,
        )
        .into_response(),
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send>) -> Response {
    tracing::error!("A request handler panicked; answering 500. This is a bug: please report it.");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "internal error; it was logged",
    )
    .into_response()
}
