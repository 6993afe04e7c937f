//! `/admin/*`: dead letters and queue depths, behind a bearer token (`admin_token`). With no
//! token configured the admin API answers 404 `admin_disabled`.

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ordermill_core::ports::{BusError, DeadLetterPage, DeadLetterSelection};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/queues", get(queues))
        .route("/admin/dlq/{queue}", get(list).delete(purge))
        .route("/admin/dlq/{queue}/replay", axum::routing::post(replay))
}

fn authorize(state: &AppState, parts: &Parts) -> Result<(), ApiError> {
    if !state.auth.has_admin() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "admin_disabled",
            "the admin API is disabled; set admin_token (ORDERMILL_ADMIN_TOKEN) to enable it",
        ));
    }
    if state.auth.is_admin(parts) {
        Ok(())
    } else {
        Err(ApiError::unauthorized(
            "send the admin token as 'Authorization: Bearer <token>'",
            "Bearer realm=\"ordermill-admin\"",
        ))
    }
}

/// An authorized admin request (extracting it checks the bearer token).
pub(super) struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        authorize(state, parts).map(|()| Admin)
    }
}

/// The `{queue}` of an admin path, after the token check.
pub(super) struct AdminQueue(String);

impl FromRequestParts<AppState> for AdminQueue {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Admin::from_request_parts(parts, state).await?;
        let path = Path::<String>::from_request_parts(parts, state).await;
        queue_from(path).map(AdminQueue)
    }
}

fn queue_from(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(q)| q)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_queue", e.body_text()))
}

fn bus_error(error: BusError) -> ApiError {
    match error {
        BusError::UnknownQueue(queue) => ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_queue",
            format!("no queue named {queue:?}; GET /admin/queues lists them"),
        ),
        other => {
            tracing::error!(error = %other, "Admin request failed on the bus.");
            ApiError::unavailable(
                "bus_unavailable",
                "the bus cannot answer right now; retry shortly",
                1,
            )
        }
    }
}

#[derive(Serialize)]
struct DeadLetterView {
    event_id: String,
    order_id: Option<String>,
    routing_key: String,
    attempts: u32,
    error: String,
    died_at: ordermill_core::UnixMillis,
    payload: Value,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct DeadLetterQuery {
    limit: Option<usize>,
    offset: Option<usize>,
}

/// `GET /admin/dlq/{queue}?limit=100&offset=0`: one page of the queue's dead letters, oldest
/// first, with the total and the next page's URL.
#[utoipa::path(
    get,
    path = "/admin/dlq/{queue}",
    tag = "admin",
    summary = "A page of a queue's dead letters",
    params(
        ("queue" = String, Path, description = "inventory, payment, notify, ..."),
        ("limit" = Option<usize>, Query, description = "1 to 1000, default 100"),
        ("offset" = Option<usize>, Query, description = "Skip this many")
    ),
    responses(
        (status = 200, description = "A page", body = super::openapi::DeadLetterPage),
        (status = 400, description = "invalid_query, invalid_queue", body = super::openapi::ErrorBody),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorBody),
        (status = 404, description = "admin_disabled, unknown_queue", body = super::openapi::ErrorBody),
        (status = 503, description = "bus_unavailable", body = super::openapi::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub(super) async fn list(
    State(state): State<AppState>,
    AdminQueue(queue): AdminQueue,
    query: Result<axum::extract::Query<DeadLetterQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let axum::extract::Query(query) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    let limit = query.limit.unwrap_or(DeadLetterPage::DEFAULT_LIMIT);
    if !(1..=DeadLetterPage::MAX_LIMIT).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("limit must be from 1 to {}, got {limit}", DeadLetterPage::MAX_LIMIT),
        ));
    }
    let page = DeadLetterPage { offset: query.offset.unwrap_or(0), limit };
    let dead = state.bus.dead_letters(&queue, page).await.map_err(bus_error)?;
    let total = state.bus.dead_letter_total(&queue).await.map_err(bus_error)?;
    let views: Vec<DeadLetterView> = dead
        .into_iter()
        .map(|d| DeadLetterView {
            event_id: d.envelope.event_id.to_string(),
            order_id: d.order_id(),
            routing_key: d.envelope.routing_key.to_string(),
            attempts: d.attempts,
            error: d.error,
            died_at: d.died_at,
            payload: serde_json::from_str(&d.envelope.payload)
                .unwrap_or(Value::String(d.envelope.payload.to_string())),
        })
        .collect();
    let next = (views.len() == limit)
        .then(|| format!("/admin/dlq/{queue}?limit={limit}&offset={}", page.offset + limit));
    Ok(axum::Json(json!({
        "queue": queue,
        "count": views.len(),
        "total": total,
        "offset": page.offset,
        "limit": limit,
        "next": next,
        "dead_letters": views,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SelectionQuery {
    event_id: Option<uuid::Uuid>,
}

/// `?event_id=<uuid>`: that event's dead letter only; without it, all of them.
fn selection(
    query: Result<axum::extract::Query<SelectionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<DeadLetterSelection, ApiError> {
    let axum::extract::Query(query) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", e.body_text()))?;
    Ok(DeadLetterSelection::from(query.event_id))
}

/// A selection of one event that took nothing: 404, so a script sees a typo.
fn check_found(queue: &str, which: DeadLetterSelection, count: usize) -> Result<(), ApiError> {
    match which {
        DeadLetterSelection::Event(id) if count == 0 => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "dead_letter_not_found",
            format!("no dead letter of event {id} in {queue}; GET /admin/dlq/{queue} lists them"),
        )),
        _ => Ok(()),
    }
}

/// `POST /admin/dlq/{queue}/replay[?event_id=...]`.
#[utoipa::path(
    post,
    path = "/admin/dlq/{queue}/replay",
    tag = "admin",
    summary = "Replay a queue's dead letters (or one)",
    params(
        ("queue" = String, Path, description = "The queue"),
        ("event_id" = Option<super::openapi::Id>, Query, description = "Only this event's dead letter")
    ),
    responses(
        (status = 200, description = "Replayed", body = super::openapi::Replayed),
        (status = 400, description = "invalid_query, invalid_queue", body = super::openapi::ErrorBody),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorBody),
        (status = 404, description = "admin_disabled, unknown_queue, dead_letter_not_found", body = super::openapi::ErrorBody),
        (status = 503, description = "bus_unavailable", body = super::openapi::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub(super) async fn replay(
    State(state): State<AppState>,
    AdminQueue(queue): AdminQueue,
    query: Result<axum::extract::Query<SelectionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let which = selection(query)?;
    let replayed = state.bus.replay_dead_letters(&queue, which).await.map_err(bus_error)?;
    check_found(&queue, which, replayed)?;
    Ok(axum::Json(json!({"queue": queue, "replayed": replayed})).into_response())
}

/// `DELETE /admin/dlq/{queue}[?event_id=...]`.
#[utoipa::path(
    delete,
    path = "/admin/dlq/{queue}",
    tag = "admin",
    summary = "Purge a queue's dead letters (or one)",
    params(
        ("queue" = String, Path, description = "The queue"),
        ("event_id" = Option<super::openapi::Id>, Query, description = "Only this event's dead letter")
    ),
    responses(
        (status = 200, description = "Purged", body = super::openapi::Purged),
        (status = 400, description = "invalid_query, invalid_queue", body = super::openapi::ErrorBody),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorBody),
        (status = 404, description = "admin_disabled, unknown_queue, dead_letter_not_found", body = super::openapi::ErrorBody),
        (status = 503, description = "bus_unavailable", body = super::openapi::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub(super) async fn purge(
    State(state): State<AppState>,
    AdminQueue(queue): AdminQueue,
    query: Result<axum::extract::Query<SelectionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let which = selection(query)?;
    let purged = state.bus.purge_dead_letters(&queue, which).await.map_err(bus_error)?;
    check_found(&queue, which, purged)?;
    Ok(axum::Json(json!({"queue": queue, "purged": purged})).into_response())
}

#[utoipa::path(
    get,
    path = "/admin/queues",
    tag = "admin",
    summary = "Every queue's counts",
    responses(
        (status = 200, description = "Counts", body = super::openapi::Queues),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorBody),
        (status = 404, description = "admin_disabled", body = super::openapi::ErrorBody),
        (status = 503, description = "bus_unavailable", body = super::openapi::ErrorBody)
    ),
    security(("admin_token" = []))
)]
pub(super) async fn queues(State(state): State<AppState>, _: Admin) -> Result<Response, ApiError> {
    let depths = state.bus.depths().await.map_err(bus_error)?;
    let queues: Vec<Value> = depths
        .into_iter()
        .map(|(queue, d)| json!({"queue": queue, "ready": d.ready, "delayed": d.delayed, "in_flight": d.in_flight, "dead": d.dead}))
        .collect();
    Ok(axum::Json(json!({"queues": queues})).into_response())
}
