//! `POST /api/payments/callback`: the payment provider tells ordermill that a pay-later order
//! was paid or that its payment failed.
//!
//! The request is authenticated by its signature, not by a bearer token:
//! `X-Ordermill-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(payment.callback_secret,
//! "<t>.<raw body>")>`, checked over the raw bytes before the body is parsed. The same callback
//! twice is one payment, answered 200 both times, so a provider that retries is safe.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ordermill_core::{Clock, Money, OrderId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use crate::adapters::integrations::signature;
use crate::adapters::workers::pay_later::{Callback, CallbackError, CallbackOutcome, PayLater};
use crate::startup::settings::Secret;

/// How far a callback's signed time may be from this node's clock (either way).
pub const SIGNATURE_TOLERANCE_SECS: i64 = 5 * 60;

/// What the callback endpoint needs; absent when `payment.mode` is `charge`.
pub struct Callbacks {
    /// Applies callbacks.
    pub service: Arc<PayLater>,
    /// `payment.callback_secret`.
    pub secret: Secret,
    /// The node's clock, for the signature's time.
    pub clock: Arc<dyn Clock>,
}

/// The callback route. It writes to the store, so like order creation it runs to the store's
/// answer, never cut by `http.request_timeout` mid-transaction.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/payments/callback", post(callback))
}

#[derive(Deserialize)]
struct CallbackRequest {
    order_id: Option<Value>,
    payment_id: Option<Value>,
    status: Option<Value>,
    amount: Option<Value>,
}

#[derive(Serialize)]
struct CallbackReply {
    order_id: OrderId,
    status: &'static str,
    outcome: CallbackOutcome,
}

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

fn text<'a>(value: &'a Option<Value>, field: &str) -> Result<&'a str, ApiError> {
    match value {
        Some(Value::String(text)) => Ok(text),
        None | Some(Value::Null) => Err(invalid("invalid_request", format!("{field} is required"))),
        Some(_) => Err(invalid("invalid_request", format!("{field} must be a string"))),
    }
}

fn parse(request: &CallbackRequest) -> Result<Callback, ApiError> {
    let order_id = OrderId::parse(text(&request.order_id, "order_id")?)
        .map_err(|e| invalid(e.code(), e.to_string()))?;
    let payment_id = text(&request.payment_id, "payment_id")?;
    if payment_id.is_empty()
        || payment_id.chars().count() > 255
        || payment_id.chars().any(char::is_control)
    {
        return Err(invalid(
            "invalid_payment_id",
            "payment_id must be 1 to 255 characters without control characters",
        ));
    }
    let paid = match text(&request.status, "status")? {
        "paid" => true,
        "failed" => false,
        other => {
            return Err(invalid(
                "invalid_status",
                format!(
                    "status must be \"paid\" or \"failed\", not {:?}",
                    other.chars().take(40).collect::<String>()
                ),
            ));
        }
    };
    let amount = Money::parse("amount", text(&request.amount, "amount")?)
        .map_err(|e| invalid("invalid_amount", e.to_string()))?;
    Ok(Callback { order_id, payment_id: payment_id.to_owned(), paid, amount })
}

#[utoipa::path(
    post,
    path = "/api/payments/callback",
    tag = "payments",
    summary = "The payment provider's signed callback (payment.mode = await_callback)",
    request_body = super::openapi::PaymentCallback,
    responses(
        (status = 200, description = "Handled (also a repeat)", body = super::openapi::CallbackReply),
        (status = 400, description = "malformed_json", body = super::openapi::ErrorBody),
        (status = 401, description = "bad_signature, stale_signature", body = super::openapi::ErrorBody),
        (status = 404, description = "order_not_found, not_found (payment.mode = charge)", body = super::openapi::ErrorBody),
        (status = 422, description = "amount_mismatch, invalid_order_id, invalid_payment_id, invalid_status, invalid_amount, invalid_request", body = super::openapi::ErrorBody),
        (status = 503, description = "store_unavailable", body = super::openapi::ErrorBody)
    ),
    security(("payment_signature" = []))
)]
pub(super) async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(callbacks) = state.callbacks.as_ref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "payment callbacks are off: this node runs payment.mode = \"charge\"",
        ));
    };
    let raw = super::body::bytes(body)?;
    let header = headers.get(signature::HEADER).and_then(|v| v.to_str().ok());
    let now_secs = callbacks.clock.now().0.div_euclid(1000);
    let refused = |code: &'static str, message: String| {
        metrics::counter!(crate::telemetry::PAYMENT_CALLBACKS, "outcome" => "refused").increment(1);
        ApiError::new(StatusCode::UNAUTHORIZED, code, message)
            .with_challenge("Signature header=\"X-Ordermill-Signature\"")
    };
    match signature::verify(
        callbacks.secret.expose().as_bytes(),
        header,
        &raw,
        now_secs,
        SIGNATURE_TOLERANCE_SECS,
    ) {
        Ok(()) => {}
        Err(signature::Refused::Bad) => {
            return Err(refused(
                "bad_signature",
                "X-Ordermill-Signature is missing or does not match the body; sign \"<t>.<raw body>\" with HMAC-SHA256 and payment.callback_secret".into(),
            ));
        }
        Err(stale @ signature::Refused::Stale(_)) => {
            return Err(refused(
                "stale_signature",
                format!("{stale}; sign with the current time (check the sender's clock)"),
            ));
        }
    }
    let request: CallbackRequest = super::body::from_bytes(&raw)?;
    let callback = parse(&request)?;
    match callbacks.service.callback(callback).await {
        Ok((outcome, order)) => {
            let reply =
                CallbackReply { order_id: order.id, status: order.status.as_str(), outcome };
            Ok((StatusCode::OK, axum::Json(reply)).into_response())
        }
        Err(CallbackError::NotFound(id)) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "order_not_found",
            format!("no order with id {id}"),
        )),
        Err(error @ CallbackError::AmountMismatch { .. }) => {
            Err(invalid("amount_mismatch", error.to_string()))
        }
        Err(CallbackError::Store(error)) => {
            tracing::error!(error = %error, "A payment callback could not be applied; answering 503 so the provider calls again.");
            Err(ApiError::unavailable(
                "store_unavailable",
                "the payment cannot be recorded right now; nothing changed, call again shortly",
                1,
            ))
        }
    }
}
