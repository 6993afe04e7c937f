//! `POST /api/orders`, `POST /api/orders/batch`, `GET /api/orders/{id}`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ordermill_core::order::check_items;
use ordermill_core::{
    CustomerId, IdempotencyKey, Money, Order, OrderId, OrderLine, OrderStatus, Quantity, Sku,
    StatusChange, UnixMillis, ValidationError,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::auth::Caller;
use super::body;
use super::error::{ApiError, Detail};
use crate::services::intake::{IntakeError, OrderInput, Placed};

/// The most orders one batch request may carry.
pub const MAX_BATCH: usize = 1000;

/// The routes that create orders. They run to the store's answer, never cut by
/// `http.request_timeout`: an order is either refused before it is queued for commit
/// (`http.max_queue_wait`) or answered with what the commit did.
pub fn writes(max_batch_body_bytes: usize) -> Router<AppState> {
    Router::new().route("/api/orders", post(create)).route(
        "/api/orders/batch",
        post(create_batch).layer(DefaultBodyLimit::max(max_batch_body_bytes)),
    )
}

/// The routes that read orders.
pub fn reads() -> Router<AppState> {
    Router::new().route("/api/orders/{id}", get(show)).route("/api/customers/me/orders", get(mine))
}

/// The most orders one page of `GET /api/customers/me/orders` holds.
pub const MAX_PAGE: u32 = 100;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PageQuery {
    limit: Option<u32>,
    before: Option<String>,
    /// Whose orders, for the callers that have no identity of their own: `open` mode and the
    /// admin token.
    customer_id: Option<String>,
}

#[derive(Serialize)]
struct OrderPage<'a> {
    orders: Vec<OrderView<'a>>,
    /// The next (older) page's URL; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

/// `GET /api/customers/me/orders?limit=20&before=<order id>`: the caller's orders, newest
/// first.
#[utoipa::path(
    get,
    path = "/api/customers/me/orders",
    tag = "orders",
    summary = "The caller's orders, newest first",
    params(
        ("limit" = Option<u32>, Query, description = "1 to 100, default 20"),
        ("before" = Option<super::openapi::Id>, Query, description = "The previous page's last order id"),
        ("customer_id" = Option<super::openapi::CustomerId>, Query, description = "In open mode and with the admin token")
    ),
    responses(
        (status = 200, description = "A page", body = super::openapi::OrderPage),
        (status = 400, description = "invalid_query, invalid_order_id", body = super::openapi::ErrorBody),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorBody),
        (status = 422, description = "invalid_customer_id", body = super::openapi::ErrorBody),
        (status = 503, description = "store_unavailable", body = super::openapi::ErrorBody)
    ),
    security((), ("customer_jwt" = []), ("admin_token" = []))
)]
pub(super) async fn mine(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<axum::extract::Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(query) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let customer = match (&caller, query.customer_id) {
        (Caller::Customer(me), None) => me.clone(),
        (Caller::Customer(_), Some(_)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "customer_id is not taken here: the orders listed are your own",
            ));
        }
        (Caller::Unverified | Caller::Admin, Some(named)) => CustomerId::parse(named)?,
        (Caller::Unverified | Caller::Admin, None) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                "without a customer's credentials, name the customer: ?customer_id=...",
            ));
        }
        (Caller::Anonymous, _) => return Err(Caller::who_are_you()),
    };
    let limit = query.limit.unwrap_or(20);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit must be from 1 to {MAX_PAGE}, got {limit}"),
        ));
    }
    let before = query
        .before
        .map(|b| OrderId::parse(&b))
        .transpose()
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    let orders =
        state.store.orders_of_customer(&customer, before, limit).await.map_err(|error| {
            tracing::error!(error = %error, "Listing a customer's orders failed.");
            ApiError::unavailable(
                "store_unavailable",
                "orders cannot be read right now; retry shortly",
                1,
            )
        })?;
    let next = (orders.len() == limit as usize).then(|| orders.last()).flatten().map(|last| {
        let (limit, before) = (limit.to_string(), last.id.to_string());
        let mut params = vec![("limit", limit.as_str()), ("before", before.as_str())];
        if caller != Caller::Customer(customer.clone()) {
            params.push(("customer_id", customer.as_str()));
        }
        // Strings only: serializing them as a query cannot fail.
        let query = serde_urlencoded::to_string(&params).unwrap_or_default();
        format!("/api/customers/me/orders?{query}")
    });
    let page = OrderPage { orders: orders.iter().map(OrderView::from).collect(), next };
    Ok(axum::Json(page).into_response())
}

// Fields are `Value` where a wrong type should get the field's own error code
// (`invalid_quantity` for `1.5` or `"2"`), not a generic schema error.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OrderRequest {
    customer_id: Option<Value>,
    #[serde(default, deserialize_with = "body::objects")]
    items: Option<Vec<ItemRequest>>,
    idempotency_key: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ItemRequest {
    sku: Option<Value>,
    quantity: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchRequest {
    #[serde(deserialize_with = "body::required_objects")]
    orders: Vec<OrderRequest>,
}

/// An order as clients see it.
#[derive(Serialize)]
pub struct OrderView<'a> {
    order_id: OrderId,
    status: &'static str,
    customer_id: &'a str,
    total: Money,
    items: &'a [OrderLine],
    created_at: UnixMillis,
    history: Vec<StatusChange>,
    /// Pay later: the deadline to pay by.
    #[serde(skip_serializing_if = "Option::is_none")]
    pay_by: Option<UnixMillis>,
    /// Pay later: where the customer pays.
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_url: Option<&'a str>,
}

impl<'a> From<&'a Order> for OrderView<'a> {
    fn from(order: &'a Order) -> Self {
        OrderView {
            order_id: order.id,
            status: order.status.as_str(),
            customer_id: order.customer_id.as_str(),
            total: order.total,
            items: &order.lines,
            created_at: order.created_at,
            history: order.full_history(),
            pay_by: order.awaited_payment.as_ref().map(|a| a.pay_by),
            payment_url: order.awaited_payment.as_ref().map(|a| a.payment_url.as_str()),
        }
    }
}

impl<'a> OrderView<'a> {
    /// The order as its creation answered it (an idempotent replay returns exactly that,
    /// whatever happened to the order since): its first status, `accepted` or, for a
    /// group-buy order, `awaiting_group`.
    pub fn as_created(order: &'a Order) -> Self {
        let first = order
            .full_history()
            .first()
            .copied()
            .unwrap_or(StatusChange::new(OrderStatus::Accepted, order.created_at));
        OrderView {
            status: first.status.as_str(),
            history: vec![first],
            pay_by: None,
            payment_url: None,
            ..OrderView::from(order)
        }
    }
}

fn short(value: &Value) -> String {
    value.to_string().chars().take(40).collect()
}

/// The body's `customer_id`, if it has one.
pub(super) fn named_customer(value: Option<Value>) -> Option<Result<CustomerId, ValidationError>> {
    value.map(|v| match v {
        Value::String(text) => CustomerId::parse(text),
        _ => Err(ValidationError::InvalidCustomerId),
    })
}

fn validate(
    caller: &Caller,
    request: OrderRequest,
    key: Option<IdempotencyKey>,
) -> Result<OrderInput, ApiError> {
    let customer_id = caller.acting_as(named_customer(request.customer_id))?;
    let items = items(request.items)?;
    Ok(OrderInput { customer_id, items, idempotency_key: key })
}

fn items(request_items: Option<Vec<ItemRequest>>) -> Result<Vec<(Sku, Quantity)>, ValidationError> {
    let items = request_items.unwrap_or_default();
    if items.len() > ordermill_core::order::MAX_ITEMS {
        return Err(ValidationError::TooManyItems {
            got: items.len(),
            max: ordermill_core::order::MAX_ITEMS,
        });
    }
    let items = items
        .into_iter()
        .map(|item| {
            let sku = match item.sku {
                Some(Value::String(text)) => Sku::parse(text)?,
                other => {
                    return Err(ValidationError::InvalidSku(
                        other.as_ref().map(short).unwrap_or_default(),
                    ));
                }
            };
            let quantity = match &item.quantity {
                Some(Value::Number(n)) => match n.as_i64() {
                    Some(n) => Quantity::parse(n)?,
                    None => return Err(Quantity::invalid(n)),
                },
                Some(other) => return Err(Quantity::invalid(short(other))),
                None => return Err(Quantity::invalid("nothing")),
            };
            Ok((sku, quantity))
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_items(items.iter().map(|(sku, _)| sku))?;
    Ok(items)
}

/// The `Idempotency-Key` header, validated.
///
/// # Errors
/// [`ValidationError::InvalidIdempotencyKey`] when it is not printable ASCII of 1..=255.
pub fn header_key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ValidationError> {
    headers
        .get("idempotency-key")
        .map(|value| {
            value
                .to_str()
                .map_err(|_| ValidationError::InvalidIdempotencyKey)
                .and_then(IdempotencyKey::parse)
        })
        .transpose()
}

fn created(placed: &Placed) -> Response {
    let order = placed.order();
    let mut response =
        (StatusCode::CREATED, axum::Json(OrderView::as_created(order))).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/orders/{}", order.id)) {
        headers.insert(header::LOCATION, location);
    }
    if placed.is_replay() {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

#[utoipa::path(
    post,
    path = "/api/orders",
    tag = "orders",
    summary = "Place an order (201 once durable)",
    request_body = super::openapi::OrderInput,
    params(
        ("Idempotency-Key" = Option<super::openapi::IdempotencyKey>, Header, description = "Makes a retry return the first answer: 1 to 255 printable ASCII characters, per customer, kept idempotency_ttl (24 h)"),
        ("Accept-Language" = Option<String>, Header, description = "zh (any zh-*) for Chinese error messages; English otherwise")
    ),
    responses(
        (status = 201, description = "Durable; Location names it", body = super::openapi::Order, headers(("Location" = String, description = "/api/orders/{id}"), ("Idempotent-Replayed" = Option<String>, description = "true on a replay"))),
        (status = 400, description = "malformed_json", body = super::openapi::ErrorBody),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorBody),
        (status = 403, description = "customer_mismatch, customer_required", body = super::openapi::ErrorBody),
        (status = 409, description = "out_of_stock, limit_exceeded, idempotency_key_in_use", body = super::openapi::ErrorBody),
        (status = 413, description = "payload_too_large", body = super::openapi::ErrorBody),
        (status = 422, description = "invalid_customer_id, no_items, too_many_items, duplicate_sku, invalid_sku, invalid_quantity, unknown_sku, amount_too_large, invalid_idempotency_key, idempotency_key_reused, invalid_request", body = super::openapi::ErrorBody),
        (status = 429, description = "rate_limited", body = super::openapi::ErrorBody),
        (status = 503, description = "store_unavailable, overloaded, shutting_down, unavailable", body = super::openapi::ErrorBody)
    ),
    security((), ("customer_jwt" = []), ("admin_token" = []))
)]
pub(super) async fn create(
    State(state): State<AppState>,
    Arrival(arrived): Arrival,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    // Admitted before the body is read: a saturated node's refusal costs no parsing.
    let slot = state.intake.admit(arrived).map_err(|e| {
        state.intake.count_rejected(e.code());
        ApiError::from(e)
    })?;
    let input = parse_one(&caller, body, &headers)
        .inspect_err(|e| state.intake.count_rejected(e.code()))?;
    let placed = state.intake.place(input, slot, arrived).await?;
    Ok(created(&placed))
}

fn parse_one(
    caller: &Caller,
    body: Result<Bytes, BytesRejection>,
    headers: &HeaderMap,
) -> Result<OrderInput, ApiError> {
    let request: OrderRequest = body::parse(body)?;
    if request.idempotency_key.is_some() {
        return Err(ApiError::invalid_request(
            "idempotency_key is only read in batch orders; send it as the Idempotency-Key header",
        ));
    }
    validate(caller, request, header_key(headers)?)
}

#[derive(Serialize)]
struct BatchResult<'a> {
    status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    order: Option<OrderView<'a>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    replayed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<Detail<'a>>,
}

#[derive(Serialize)]
struct BatchResponse<'a> {
    accepted: usize,
    rejected: usize,
    results: Vec<BatchResult<'a>>,
}

#[utoipa::path(
    post,
    path = "/api/orders/batch",
    tag = "orders",
    summary = "Place up to 1000 orders",
    request_body = super::openapi::BatchInput,
    responses(
        (status = 200, description = "One result per order", body = super::openapi::BatchReply),
        (status = 400, description = "malformed_json", body = super::openapi::ErrorBody),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorBody),
        (status = 413, description = "payload_too_large", body = super::openapi::ErrorBody),
        (status = 422, description = "no_orders, too_many_orders, invalid_request", body = super::openapi::ErrorBody),
        (status = 429, description = "rate_limited", body = super::openapi::ErrorBody)
    ),
    security((), ("customer_jwt" = []), ("admin_token" = []))
)]
pub(super) async fn create_batch(
    State(state): State<AppState>,
    Arrival(arrived): Arrival,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: BatchRequest =
        body::parse(body).inspect_err(|e| state.intake.count_rejected(e.code()))?;
    if request.orders.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "no_orders",
            "a batch needs at least one order",
        ));
    }
    if request.orders.len() > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_orders",
            format!("a batch may hold at most {MAX_BATCH} orders, got {}", request.orders.len()),
        ));
    }
    let parsed: Vec<Result<OrderInput, ApiError>> = request
        .orders
        .into_iter()
        .map(|mut order| {
            let key =
                order.idempotency_key.take().map(|k| IdempotencyKey::parse(&k)).transpose()?;
            validate(&caller, order, key)
        })
        .collect();
    let mut refused = Vec::with_capacity(parsed.len());
    let mut inputs = Vec::with_capacity(parsed.len());
    for outcome in parsed {
        match outcome {
            Ok(input) => {
                inputs.push(Ok(input));
                refused.push(None);
            }
            Err(error) => {
                state.intake.count_rejected(error.code());
                refused.push(Some(error));
            }
        }
    }
    // Admitted after parsing, unlike a single order: a refusal is counted once per order.
    let mut placed = match state.intake.admit(arrived) {
        Ok(slot) => state.intake.place_many(inputs, slot, arrived).await,
        Err(error) => state.intake.refuse_all(inputs.len(), &error),
    }
    .into_iter();
    let outcomes: Vec<Result<Placed, ApiError>> = refused
        .into_iter()
        .map(|refusal| match refusal {
            Some(error) => Err(error),
            None => placed.next().map_or_else(
                || Err(IntakeError::Unavailable("no result for the order".into()).into()),
                |o| o.map_err(ApiError::from),
            ),
        })
        .collect();
    let results: Vec<BatchResult<'_>> = outcomes
        .iter()
        .map(|outcome| match outcome {
            Ok(placed) => BatchResult {
                status: StatusCode::CREATED.as_u16(),
                order: Some(OrderView::as_created(placed.order())),
                replayed: placed.is_replay(),
                error: None,
            },
            Err(error) => BatchResult {
                status: error.status().as_u16(),
                order: None,
                replayed: false,
                error: Some(Detail::localized(error.code(), error.message())),
            },
        })
        .collect();
    let accepted = outcomes.iter().filter(|o| o.is_ok()).count();
    let response = BatchResponse { accepted, rejected: outcomes.len() - accepted, results };
    Ok((StatusCode::OK, axum::Json(response)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/orders/{id}",
    tag = "orders",
    summary = "One order (its customer, or the admin token)",
    params(
        ("id" = super::openapi::Id, Path, description = "The order id")
    ),
    responses(
        (status = 200, description = "The order", body = super::openapi::Order),
        (status = 400, description = "invalid_order_id", body = super::openapi::ErrorBody),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorBody),
        (status = 404, description = "order_not_found (also for someone else's order)", body = super::openapi::ErrorBody),
        (status = 503, description = "store_unavailable", body = super::openapi::ErrorBody)
    ),
    security((), ("customer_jwt" = []), ("admin_token" = []))
)]
pub(super) async fn show(
    State(state): State<AppState>,
    caller: Caller,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    if caller == Caller::Anonymous {
        return Err(Caller::who_are_you());
    }
    let Path(id) =
        id.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_order_id", e.body_text()))?;
    let id = OrderId::parse(&id)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))?;
    // Someone else's order answers exactly as a missing one: its existence is not told.
    let not_found = || {
        ApiError::new(StatusCode::NOT_FOUND, "order_not_found", format!("no order with id {id}"))
    };
    if let Some(order) = state.order_cache.get(&id).await {
        if !caller.may_see(&order.customer_id) {
            return Err(not_found());
        }
        return Ok(axum::Json(OrderView::from(&order)).into_response());
    }
    match state.store.get_order(id).await {
        Ok(Some(order)) if !caller.may_see(&order.customer_id) => Err(not_found()),
        Ok(Some(order)) => {
            let response = axum::Json(OrderView::from(&order)).into_response();
            // Only final orders are cached from a read: one still moving could be cached
            // just after a consumer refreshed it, and then shadow the newer state.
            if order.status.is_final() {
                state.order_cache.insert(&order).await;
            }
            Ok(response)
        }
        Ok(None) => Err(not_found()),
        Err(error) => {
            tracing::error!(order_id = %id, error = %error, "Reading an order failed.");
            Err(ApiError::unavailable(
                "store_unavailable",
                "orders cannot be read right now; retry shortly",
                1,
            ))
        }
    }
}

/// When the request reached the node (the edge stamps it; now, for a router driven without
/// it, as in unit tests).
pub(super) struct Arrival(pub(super) std::time::Instant);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Arrival {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Arrival(
            parts
                .extensions
                .get::<super::serve::Arrived>()
                .map_or_else(std::time::Instant::now, |a| a.0),
        ))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// Any JSON value, nested a few levels.
    fn any_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| json!(f)),
            "[ -~é蟹]{0,40}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
                proptest::collection::btree_map("[a-z_]{1,12}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A body shaped like an order, each field anything: past the JSON syntax that HTTP
    /// fuzzing mostly stops at, into the field-by-field validation.
    fn order_like() -> impl Strategy<Value = Value> {
        let items = proptest::collection::vec((any_json(), any_json(), any::<bool>()), 0..40)
            .prop_map(|items| {
                let line = |(i, (sku, quantity, valid))| {
                    if valid {
                        json!({"sku": format!("crab-{i}"), "quantity": i + 1})
                    } else {
                        json!({"sku": sku, "quantity": quantity})
                    }
                };
                items.into_iter().enumerate().map(line).collect::<Vec<Value>>()
            });
        let customer = prop_oneof![Just(json!("ann")), any_json()];
        (customer, items)
            .prop_map(|(customer, items)| json!({"customer_id": customer, "items": items}))
    }

    fn check(body: &[u8], key: Option<&str>) -> Result<(), TestCaseError> {
        let mut headers = HeaderMap::new();
        if let Some(value) = key.and_then(|k| HeaderValue::from_str(k).ok()) {
            headers.insert("idempotency-key", value);
        }
        match parse_one(&Caller::Unverified, Ok(Bytes::copy_from_slice(body)), &headers) {
            Ok(input) => {
                let lines = input.items.len();
                prop_assert!((1..=ordermill_core::order::MAX_ITEMS).contains(&lines));
                let skus: std::collections::HashSet<&str> =
                    input.items.iter().map(|(sku, _)| sku.as_str()).collect();
                prop_assert_eq!(skus.len(), lines, "a SKU twice");
            }
            Err(error) => {
                let status = error.into_response().status();
                prop_assert!(status.is_client_error(), "answered {status}");
            }
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn any_bytes_are_an_order_or_a_4xx(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            check(&body, None)?;
        }

        #[test]
        fn any_order_shaped_json_is_an_order_or_a_4xx(body in order_like(), key in "[ -~]{0,300}") {
            check(body.to_string().as_bytes(), Some(&key))?;
        }
    }
}
