//! `GET /metrics`: Prometheus text format.

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use metrics_exporter_prometheus::PrometheusHandle;

use super::AppState;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(render))
}

async fn render(State(state): State<AppState>) -> impl IntoResponse {
    text(&state.metrics)
}

fn text(handle: &PrometheusHandle) -> impl IntoResponse + use<> {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render())
}

/// What `ordermill worker --metrics-listen` serves: `/metrics` and `/healthz` (a worker has no
/// API).
pub fn worker_router(handle: PrometheusHandle) -> Router {
    Router::new().route("/metrics", get(move || std::future::ready(text(&handle)))).route(
        "/healthz",
        get(|| std::future::ready(axum::Json(serde_json::json!({"status": "ok"})))),
    )
}
