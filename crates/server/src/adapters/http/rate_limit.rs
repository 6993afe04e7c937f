//! Per-client request budgets on `/api/*` (`rate_limit`): one bucket per verified customer,
//! per client address when the request has none (and in `open` mode, where nobody is
//! verified). Merchant and admin requests pass uncounted. Over budget: 429 `rate_limited`
//! with `Retry-After`.
//!
//! A shared budget that cannot be read (Redis down) lets the request through: the limit
//! protects the service, and refusing everyone would turn a cache outage into a full one.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;

/// The middleware.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(limiter) = &state.rate_limiter else { return next.run(request).await };
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    if state.auth.is_merchant(&parts) || state.auth.is_admin(&parts) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let key = match state.auth.caller(&parts) {
        Ok(Caller::Customer(id)) => {
            let key = format!("c:{}", id.as_str());
            // The handler's extractor reuses it instead of verifying the token again.
            parts.extensions.insert(Caller::Customer(id));
            key
        }
        _ => match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(peer)) => format!("ip:{}", peer.ip()),
            None => "ip:unknown".to_owned(),
        },
    };
    match limiter.acquire(&key).await {
        Ok(None) => next.run(Request::from_parts(parts, body)).await,
        Ok(Some(wait)) => {
            metrics::counter!("ordermill_rate_limited_total").increment(1);
            rate_limited(wait).into_response()
        }
        Err(error) => {
            metrics::counter!("ordermill_rate_limit_errors_total").increment(1);
            tracing::warn!(error = %error, "The shared rate limit could not be read; letting the request through.");
            next.run(Request::from_parts(parts, body)).await
        }
    }
}

fn rate_limited(wait: Duration) -> ApiError {
    let secs = u32::try_from(wait.as_millis().div_ceil(1000)).unwrap_or(u32::MAX).max(1);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests from this client; retry in {secs} s"),
    )
    .with_retry_after(secs)
}
