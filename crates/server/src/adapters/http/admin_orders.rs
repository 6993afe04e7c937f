//! `/admin/orders`: orders an operator looks for (stuck in `accepted`, money owed back) and
//! cancels, behind the admin token like the rest of `/admin`.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ordermill_core::ports::{OrderFilter, OrderQuery};
use ordermill_core::{HumanDuration, OrderId, OrderStatus, UnixMillis};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::admin::Admin;
use super::error::ApiError;
use super::orders::OrderView;
use crate::adapters::workers::order_admin::{CancelError, CancelOutcome};

/// The most orders one page holds.
pub const MAX_PAGE: u32 = 500;
/// How far back a listing looks by default (`within`), and at most.
const DEFAULT_WITHIN: Duration = Duration::from_secs(7 * 86_400);
const MAX_WITHIN: Duration = Duration::from_secs(400 * 86_400);
/// The longest cancellation reason kept.
const MAX_REASON: usize = 200;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/admin/orders", get(list)).route("/admin/orders/{id}/cancel", post(cancel))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListQuery {
    status: Option<String>,
    older_than: Option<String>,
    within: Option<String>,
    limit: Option<u32>,
    before: Option<String>,
}

#[derive(Serialize)]
struct OrderList<'a> {
    orders: Vec<OrderView<'a>>,
    /// The next (older) page's URL; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

fn bad_query(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
}

fn filter(status: &str) -> Result<OrderFilter, ApiError> {
    if status == "refund_required" {
        return Ok(OrderFilter::RefundRequired);
    }
    OrderStatus::parse(status).map(OrderFilter::Status).ok_or_else(|| {
        bad_query(format!(
            "status must be awaiting_group, accepted, awaiting_payment, confirmed, cancelled or refund_required, not {:?}",
            status.chars().take(40).collect::<String>()
        ))
    })
}

fn duration(key: &str, text: Option<&str>, default: Duration) -> Result<Duration, ApiError> {
    text.map_or(Ok(default), |text| {
        text.parse::<HumanDuration>()
            .map(HumanDuration::get)
            .map_err(|e| bad_query(format!("{key}: {e}")))
    })
}

/// `GET /admin/orders?status=accepted&older_than=10m&within=7days&limit=50&before=<id>`:
/// orders of that status (or `refund_required`) created between `within` and `older_than`
/// ago, newest first. The store scans that window, so a narrow one answers fastest.
#[utoipa::path(
    get,
    path = "/admin/orders",
    tag = "admin",
    summary = "Orders of a status in a time window, newest first",
    params(
        ("status" = Option<String>, Query, description = "An order status or refund_required; default accepted"),
        ("older_than" = Option<String>, Query, description = "A duration, default 0s"),
        ("within" = Option<String>, Query, description = "A duration, default 7days, at most 400days"),
        ("limit" = Option<u32>, Query, description = "1 to 500, default 50"),
        ("before" = Option<super::openapi::Id>, Query, description = "The previous page's last order id")
    ),
    responses(
        (status = 200, description = "A page", body = super::openapi::OrderPage),
        (status = 400, description = "invalid_query, invalid_order_id", body = super::openapi::ErrorBody),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorBody),
        (status = 404, description = "admin_disabled", body = super::openapi::ErrorBody),
        (status = 503, description = "store_unavailable", body = super::openapi::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    _: Admin,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| bad_query(e.body_text()))?;
    let status = query.status.as_deref().unwrap_or("accepted");
    let filter = filter(status)?;
    let older_than = duration("older_than", query.older_than.as_deref(), Duration::ZERO)?;
    let within = duration("within", query.within.as_deref(), DEFAULT_WITHIN)?;
    if within > MAX_WITHIN || within <= older_than {
        return Err(bad_query("within must be longer than older_than and at most \"400days\""));
    }
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(bad_query(format!("limit must be from 1 to {MAX_PAGE}, got {limit}")));
    }
    let before = query
        .before
        .as_deref()
        .map(OrderId::parse)
        .transpose()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    let now = state.order_admin.now();
    let ago = |d: Duration| UnixMillis(now.0.saturating_sub(d.as_millis() as i64));
    let orders = state
        .store
        .find_orders(OrderQuery {
            filter,
            since: ago(within),
            until: ago(older_than),
            before,
            limit,
        })
        .await
        .map_err(|error| {
            tracing::error!(error = %error, "Listing orders failed.");
            ApiError::unavailable(
                "store_unavailable",
                "orders cannot be read right now; retry shortly",
                1,
            )
        })?;
    let next = (orders.len() == limit as usize).then(|| {
        let last = orders.last().map(|o| o.id.to_string()).unwrap_or_default();
        format!(
            "/admin/orders?status={status}&older_than={}&within={}&limit={limit}&before={last}",
            HumanDuration::from_millis(older_than.as_millis() as u64),
            HumanDuration::from_millis(within.as_millis() as u64),
        )
        .replace(' ', "")
    });
    let list = OrderList { orders: orders.iter().map(OrderView::from).collect(), next };
    Ok(axum::Json(list).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CancelRequest {
    reason: Option<String>,
}

#[derive(Serialize)]
struct Cancelled<'a> {
    outcome: CancelOutcome,
    order: OrderView<'a>,
}

/// `POST /admin/orders/{id}/cancel` (`{"reason": "..."}` optional): cancels an unpaid order that
/// waits (accepted or awaiting payment); its stock comes back and its customer is notified.
#[utoipa::path(
    post,
    path = "/admin/orders/{id}/cancel",
    tag = "admin",
    summary = "Cancel an unpaid waiting order",
    request_body(content = Option<super::openapi::CancelInput>, description = "Optional: an empty body cancels with the default reason"),
    params(
        ("id" = super::openapi::Id, Path, description = "The order id")
    ),
    responses(
        (status = 200, description = "Cancelled, or already", body = super::openapi::CancelReply),
        (status = 400, description = "invalid_order_id, malformed_json", body = super::openapi::ErrorBody),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorBody),
        (status = 404, description = "order_not_found, admin_disabled", body = super::openapi::ErrorBody),
        (status = 409, description = "order_confirmed, order_in_deal, order_paid", body = super::openapi::ErrorBody),
        (status = 422, description = "invalid_reason", body = super::openapi::ErrorBody),
        (status = 503, description = "store_unavailable", body = super::openapi::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub(super) async fn cancel(
    State(state): State<AppState>,
    _: Admin,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(id) =
        id.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_order_id", e.body_text()))?;
    let id = OrderId::parse(&id)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    let raw = super::body::bytes(body)?;
    // No body, or `null`, cancels with the default reason (the document allows both).
    let request: CancelRequest = if raw.is_empty() {
        CancelRequest::default()
    } else {
        super::body::from_bytes::<Option<CancelRequest>>(&raw)?.unwrap_or_default()
    };
    let reason = request.reason.unwrap_or_else(|| "cancelled by an operator".to_owned());
    if reason.is_empty()
        || reason.chars().count() > MAX_REASON
        || reason.chars().any(char::is_control)
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_reason",
            format!("reason must be 1 to {MAX_REASON} characters without control characters"),
        ));
    }
    match state.order_admin.cancel(id, reason).await {
        Ok((outcome, order)) => {
            Ok(axum::Json(Cancelled { outcome, order: OrderView::from(&order) }).into_response())
        }
        Err(error @ CancelError::NotFound(_)) => {
            Err(ApiError::new(StatusCode::NOT_FOUND, error.code(), error.to_string()))
        }
        Err(CancelError::Store(error)) => {
            tracing::error!(order_id = %id, error = %error, "Cancelling an order failed.");
            Err(ApiError::unavailable(
                "store_unavailable",
                "the order cannot be cancelled right now; nothing changed, retry shortly",
                1,
            ))
        }
        Err(refused) => {
            Err(ApiError::new(StatusCode::CONFLICT, refused.code(), refused.to_string()))
        }
    }
}
