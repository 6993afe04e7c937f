//! `GET /healthz` (the process answers) and `GET /readyz`: 200 when the node can take orders —
//! the store takes writes and the hot-stock counts can be sold from — and 503 with the reason
//! otherwise. The broker is reported but does not make a node unready: orders are durable in
//! the store's outbox and relayed once it is back, so taking a node out of the load balancer
//! for a broker outage would refuse orders it can keep.

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::AppState;
use super::error::ApiError;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz))
}

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    summary = "The process answers",
    responses(
        (status = 200, description = "Alive", body = super::openapi::Health)
    ),
    security(())
)]
pub(super) async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "health",
    summary = "The node can take orders",
    responses(
        (status = 200, description = "Ready", body = super::openapi::Ready),
        (status = 503, description = "not_ready", body = super::openapi::ErrorBody)
    ),
    security(())
)]
pub(super) async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    if let Err(error) = state.store.check_writable().await {
        tracing::warn!(error = %error, "Readiness check failed: the store does not take writes.");
        return Err(ApiError::unavailable(
            "not_ready",
            format!("the store does not take writes: {error}"),
            5,
        ));
    }
    if let Err(reason) = state.catalog.stock_ready().await {
        tracing::warn!(reason = %reason, "Readiness check failed: hot stock cannot be sold from.");
        return Err(ApiError::unavailable("not_ready", reason, 2));
    }
    let broker = if state.bus.is_connected() { "ok" } else { "reconnecting" };
    Ok(axum::Json(json!({"status": "ready", "store": "ok", "stock": "ok", "broker": broker}))
        .into_response())
}
