//! `GET /metrics`: Prometheus text format.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use ordermill_core::ports::{EventBus, OrderStore};

use super::AppState;
use super::error::ApiError;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    summary = "Prometheus metrics",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)
    ),
    security(())
)]
pub(super) async fn render(State(state): State<AppState>) -> impl IntoResponse {
    text(&state.metrics)
}

pub(super) fn text(handle: &PrometheusHandle) -> impl IntoResponse + use<> {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render())
}

/// What `ordermill worker --metrics-listen` serves (a worker has no API): `/metrics`,
/// `/healthz` (the process answers) and `/readyz` — 200 when the worker can do its work (its
/// store takes writes and its broker connection is up), 503 `not_ready` with the reason
/// otherwise, so a supervisor or an orchestrator sees a worker that is alive but idle.
pub fn worker_router(
    handle: PrometheusHandle,
    store: Arc<dyn OrderStore>,
    bus: Arc<dyn EventBus>,
) -> Router {
    Router::new()
        .route("/metrics", get(move || std::future::ready(text(&handle))))
        .route(
            "/healthz",
            get(|| std::future::ready(axum::Json(serde_json::json!({"status": "ok"})))),
        )
        .route("/readyz", get(move || worker_ready(store.clone(), bus.clone())))
}

async fn worker_ready(
    store: Arc<dyn OrderStore>,
    bus: Arc<dyn EventBus>,
) -> Result<axum::response::Response, ApiError> {
    if let Err(error) = store.check_writable().await {
        tracing::warn!(error = %error, "Readiness check failed: the store does not take writes.");
        return Err(ApiError::unavailable(
            "not_ready",
            format!("the store does not take writes: {error}"),
            5,
        ));
    }
    if !bus.is_connected() {
        tracing::warn!("Readiness check failed: the broker connection is down.");
        return Err(ApiError::unavailable(
            "not_ready",
            "the broker connection is down; consumers resume once it is back",
            2,
        ));
    }
    Ok(axum::Json(serde_json::json!({"status": "ready", "store": "ok", "broker": "ok"}))
        .into_response())
}
