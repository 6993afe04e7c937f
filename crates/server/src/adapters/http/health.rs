//! `GET /healthz` (the process answers) and `GET /readyz` (the store takes writes).

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

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    match state.store.check_writable().await {
        Ok(()) => Ok(axum::Json(json!({"status": "ready", "store": "ok"})).into_response()),
        Err(error) => {
            tracing::warn!(error = %error, "Readiness check failed: the store does not take writes.");
            Err(ApiError::unavailable(
                "not_ready",
                format!("the store does not take writes: {error}"),
                5,
            ))
        }
    }
}
