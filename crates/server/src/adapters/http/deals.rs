//! `POST /api/deals`, `GET /api/deals/{id}`, `POST /api/deals/{id}/join`: group buying.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ordermill_core::deal::check_deadline;
use ordermill_core::{
    Deal, DealId, DealMember, GroupSize, Money, Sku, UnixMillis, ValidationError,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::auth::{Caller, Merchant};
use super::body;
use super::error::ApiError;
use super::orders::{Arrival, OrderView, header_key, named_customer};
use crate::services::deals::NewDeal;

/// Opening and reading deals.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/deals", post(open)).route("/api/deals/{id}", get(show))
}

/// Joining, which places an order: like order creation it runs to the store's answer, never
/// cut by `http.request_timeout` mid-transaction.
pub fn joins() -> Router<AppState> {
    Router::new().route("/api/deals/{id}/join", post(join))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DealRequest {
    sku: Option<Value>,
    deal_price: Option<Value>,
    group_size: Option<Value>,
    expires_in: Option<Value>,
    expires_at: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinRequest {
    customer_id: Option<Value>,
}

/// A deal as clients see it.
#[derive(Serialize)]
pub(super) struct DealView<'a> {
    #[serde(skip)]
    deal: &'a Deal,
    deal_id: DealId,
    sku: &'a str,
    deal_price: Money,
    group_size: u32,
    status: &'static str,
    /// How many have joined.
    member_count: usize,
    /// Whether the caller is one of them (absent when the caller is not identified).
    #[serde(skip_serializing_if = "Option::is_none")]
    joined: Option<bool>,
    /// Who joined, with their orders: for the admin token only.
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<&'a [DealMember]>,
    slots_left: u32,
    created_at: UnixMillis,
    expires_at: UnixMillis,
    /// Milliseconds until the deadline; 0 once closed.
    time_left_ms: i64,
    /// The same, for people (`14m 59s`).
    time_left: String,
}

impl<'a> DealView<'a> {
    pub(super) fn new(deal: &'a Deal, now: UnixMillis) -> Self {
        let left = deal.millis_left(now);
        // Whole seconds: `14m 59s` reads better than `14m 59s 312ms`.
        let shown = std::time::Duration::from_secs(u64::try_from(left / 1000).unwrap_or(0));
        DealView {
            deal,
            deal_id: deal.id,
            sku: deal.sku.as_str(),
            deal_price: deal.deal_price,
            group_size: deal.group_size.get(),
            status: deal.status.as_str(),
            member_count: deal.members.len(),
            joined: None,
            members: None,
            slots_left: deal.group_size.get().saturating_sub(deal.members.len() as u32),
            created_at: deal.created_at,
            expires_at: deal.expires_at,
            time_left_ms: left,
            time_left: humantime::format_duration(shown).to_string(),
        }
    }
}

impl<'a> DealView<'a> {
    /// What `caller` may see: members to the admin, whether they joined to a customer,
    /// counts to everyone.
    fn seen_by(self, caller: &Caller) -> Self {
        match caller {
            Caller::Admin => DealView { members: Some(self.deal.members.as_slice()), ..self },
            Caller::Customer(me) => {
                let joined = self.deal.members.iter().any(|m| &m.customer_id == me);
                DealView { joined: Some(joined), ..self }
            }
            Caller::Unverified | Caller::Anonymous => self,
        }
    }
}

/// A joined member's order, with its deal.
#[derive(Serialize)]
struct JoinView<'a> {
    deal_id: DealId,
    #[serde(flatten)]
    order: OrderView<'a>,
}

fn short(value: &Value) -> String {
    value.to_string().chars().take(40).collect()
}

fn deal_id(path: Result<Path<String>, PathRejection>) -> Result<DealId, ApiError> {
    let Path(id) =
        path.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_deal_id", e.body_text()))?;
    DealId::parse(&id).map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))
}

fn deadline(request: &DealRequest, now: UnixMillis) -> Result<UnixMillis, ValidationError> {
    let invalid = |why: String| ValidationError::InvalidExpiry(why);
    let at = match (&request.expires_in, &request.expires_at) {
        (Some(Value::String(text)), None) => {
            let after = humantime::parse_duration(text).map_err(|e| {
                invalid(format!("expires_in must be a duration like \"15m\" or \"2h\": {e}"))
            })?;
            let ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
            UnixMillis(now.0.saturating_add(ms))
        }
        (None, Some(Value::String(text))) => {
            let at = humantime::parse_rfc3339_weak(text).map_err(|e| {
                invalid(format!(
                    "expires_at must be an RFC 3339 time like \"2026-11-24T20:00:00Z\": {e}"
                ))
            })?;
            let ms = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
            UnixMillis(i64::try_from(ms).unwrap_or(i64::MAX))
        }
        (None, None) => {
            return Err(invalid("give the deadline as expires_in (\"15m\") or expires_at".into()));
        }
        (Some(_), Some(_)) => {
            return Err(invalid("give expires_in or expires_at, not both".into()));
        }
        (Some(other), None) | (None, Some(other)) => {
            return Err(invalid(format!("the deadline must be a string, got {}", short(other))));
        }
    };
    check_deadline(at, now)
}

fn validate(request: &DealRequest, now: UnixMillis) -> Result<NewDeal, ValidationError> {
    let sku = match &request.sku {
        Some(Value::String(text)) => Sku::parse(text.clone())?,
        other => {
            return Err(ValidationError::InvalidSku(other.as_ref().map(short).unwrap_or_default()));
        }
    };
    let deal_price = match &request.deal_price {
        Some(Value::String(text)) => Money::parse("deal_price", text)?,
        other => {
            return Err(ValidationError::InvalidMoney {
                field: "deal_price",
                got: other.as_ref().map(short).unwrap_or_default(),
                max: "999999999.99",
            });
        }
    };
    let group_size = match &request.group_size {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(n) => GroupSize::parse(n)?,
            None => return Err(GroupSize::invalid(n)),
        },
        other => return Err(GroupSize::invalid(other.as_ref().map(short).unwrap_or_default())),
    };
    Ok(NewDeal { sku, deal_price, group_size, expires_at: deadline(request, now)? })
}

#[utoipa::path(
    post,
    path = "/api/deals",
    tag = "deals",
    summary = "Open a group-buy deal",
    request_body = super::openapi::DealInput,
    responses(
        (status = 201, description = "Opened", body = super::openapi::Deal),
        (status = 400, description = "malformed_json", body = super::openapi::ErrorBody),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorBody),
        (status = 422, description = "invalid_sku, unknown_sku, invalid_price, invalid_group_size, invalid_expiry, invalid_request", body = super::openapi::ErrorBody),
        (status = 503, description = "store_unavailable", body = super::openapi::ErrorBody)
    ),
    security(("merchant_token" = []))
)]
pub(super) async fn open(
    State(state): State<AppState>,
    _merchant: Merchant,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: DealRequest = body::parse(body)?;
    let new = validate(&request, state.deals.now())?;
    let deal = state.deals.open(new).await?;
    let mut response =
        (StatusCode::CREATED, axum::Json(DealView::new(&deal, state.deals.now()))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/deals/{}", deal.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/api/deals/{id}",
    tag = "deals",
    summary = "One deal",
    params(
        ("id" = super::openapi::Id, Path, description = "The deal id")
    ),
    responses(
        (status = 200, description = "The deal", body = super::openapi::Deal),
        (status = 400, description = "invalid_deal_id", body = super::openapi::ErrorBody),
        (status = 404, description = "deal_not_found", body = super::openapi::ErrorBody)
    ),
    security((), ("customer_jwt" = []), ("admin_token" = []))
)]
pub(super) async fn show(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let deal = state.deals.get(deal_id(path)?).await?;
    Ok(axum::Json(DealView::new(&deal, state.deals.now()).seen_by(&caller)).into_response())
}

#[utoipa::path(
    post,
    path = "/api/deals/{id}/join",
    tag = "deals",
    summary = "Join a deal (places an order awaiting its group)",
    request_body = super::openapi::JoinInput,
    params(
        ("id" = super::openapi::Id, Path, description = "The deal id"),
        ("Idempotency-Key" = Option<super::openapi::IdempotencyKey>, Header, description = "Makes a retry return the first answer: 1 to 255 printable ASCII characters, per customer, kept idempotency_ttl (24 h)")
    ),
    responses(
        (status = 201, description = "Joined", body = super::openapi::JoinedOrder),
        (status = 400, description = "malformed_json, invalid_deal_id", body = super::openapi::ErrorBody),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorBody),
        (status = 403, description = "customer_mismatch, customer_required", body = super::openapi::ErrorBody),
        (status = 404, description = "deal_not_found", body = super::openapi::ErrorBody),
        (status = 409, description = "already_joined, deal_full, deal_expired, limit_exceeded, out_of_stock", body = super::openapi::ErrorBody),
        (status = 422, description = "invalid_customer_id, invalid_request", body = super::openapi::ErrorBody),
        (status = 429, description = "rate_limited", body = super::openapi::ErrorBody),
        (status = 503, description = "store_unavailable, overloaded", body = super::openapi::ErrorBody)
    ),
    security((), ("customer_jwt" = []), ("admin_token" = []))
)]
pub(super) async fn join(
    State(state): State<AppState>,
    Arrival(arrived): Arrival,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // A join is an order request: admitted like one, before its body is read, so that under
    // overload joins are refused at once instead of queueing without bound for the store.
    let slot = state.intake.admit(arrived).map_err(|e| {
        state.intake.count_rejected(e.code());
        ApiError::from(e)
    })?;
    let id = deal_id(path)?;
    let request: JoinRequest = body::parse(body)?;
    let customer = caller.acting_as(named_customer(request.customer_id))?;
    let key = header_key(&headers)?;
    let joined = state.deals.join(id, customer, key, slot).await?;
    let view = JoinView { deal_id: joined.deal_id, order: OrderView::as_created(&joined.order) };
    let mut response = (StatusCode::CREATED, axum::Json(view)).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/orders/{}", joined.order.id)) {
        headers.insert(header::LOCATION, location);
    }
    if joined.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    Ok(response)
}
