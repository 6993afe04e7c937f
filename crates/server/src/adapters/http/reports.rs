//! `POST /api/reports`, `GET /api/reports/{id}`, `GET /api/reports/{id}/download`: reports
//! (报表) for merchants, run off the request path by the consumer of `reports`.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ordermill_core::report::{Report, ReportFormat, ReportId, ReportKind, ReportSpec};
use ordermill_core::{OrderStatus, Sku, UnixMillis, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::auth::Merchant;
use super::body;
use super::error::ApiError;
use crate::services::reports::ReportError;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/reports", post(create))
        .route("/api/reports/{id}", get(show))
        .route("/api/reports/{id}/download", get(download))
}

/// A merchant, or the admin token (operators read reports too).
pub(super) struct ReportReader;

impl FromRequestParts<AppState> for ReportReader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if state.auth.is_admin(parts) {
            return Ok(ReportReader);
        }
        Merchant::from_request_parts(parts, state).await.map(|_| ReportReader)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportRequest {
    kind: Option<Value>,
    from: Option<Value>,
    to: Option<Value>,
    format: Option<Value>,
    filters: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Filters {
    status: Option<String>,
    sku: Option<String>,
}

fn short(value: &Value) -> String {
    value.to_string().chars().take(40).collect()
}

/// An instant: RFC 3339 text, or milliseconds since the epoch.
fn instant(field: &str, value: Option<&Value>) -> Result<UnixMillis, ValidationError> {
    let invalid = |why: String| ValidationError::InvalidReportRange(why);
    match value {
        Some(Value::String(text)) => {
            let at = humantime::parse_rfc3339_weak(text).map_err(|e| {
                invalid(format!(
                    "{field} must be an RFC 3339 time like \"2026-11-01T00:00:00Z\": {e}"
                ))
            })?;
            let ms = at.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
            Ok(UnixMillis(i64::try_from(ms).unwrap_or(i64::MAX)))
        }
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|ms| *ms >= 0)
            .map(UnixMillis)
            .ok_or_else(|| invalid(format!("{field} must be milliseconds since 1970, got {n}"))),
        Some(other) => {
            Err(invalid(format!("{field} must be an RFC 3339 time, got {}", short(other))))
        }
        None => Err(invalid(format!("{field} is required (an RFC 3339 time)"))),
    }
}

fn spec(request: &ReportRequest) -> Result<ReportSpec, ApiError> {
    let kind = match &request.kind {
        Some(Value::String(text)) => ReportKind::parse(text),
        _ => None,
    }
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_report_kind",
            format!(
                "kind must be one of sales_by_sku, orders, deals, payments; got {}",
                request.kind.as_ref().map(short).unwrap_or_else(|| "nothing".into())
            ),
        )
    })?;
    let format = match &request.format {
        None => Some(ReportFormat::Csv),
        Some(Value::String(text)) => ReportFormat::parse(text),
        Some(_) => None,
    }
    .ok_or_else(|| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_report_format",
            format!(
                "format must be csv or xlsx; got {}",
                request.format.as_ref().map(short).unwrap_or_default()
            ),
        )
    })?;
    let from = instant("from", request.from.as_ref())?;
    let to = instant("to", request.to.as_ref())?;
    let filters: Filters = match &request.filters {
        None | Some(Value::Null) => Filters { status: None, sku: None },
        Some(value @ Value::Object(_)) => serde_json::from_value(value.clone()).map_err(|e| {
            ValidationError::InvalidReportFilter(format!(
                "filters takes status and sku (strings): {e}"
            ))
        })?,
        Some(other) => {
            return Err(ValidationError::InvalidReportFilter(format!(
                "filters must be an object like {{\"status\": \"confirmed\"}}, got {}",
                short(other)
            ))
            .into());
        }
    };
    let status = filters
        .status
        .map(|s| {
            OrderStatus::parse(&s).ok_or_else(|| {
                ValidationError::InvalidReportFilter(format!(
                    "filters.status must be an order status (accepted, confirmed, cancelled, awaiting_payment, awaiting_group), got {:?}",
                    s.chars().take(40).collect::<String>()
                ))
            })
        })
        .transpose()?;
    let sku = filters.sku.map(Sku::parse).transpose()?;
    Ok(ReportSpec::new(kind, format, (from, to), status, sku)?)
}

/// A report as its status page shows it.
#[derive(Serialize)]
struct ReportView<'a> {
    report_id: ReportId,
    kind: &'static str,
    format: &'static str,
    from: UnixMillis,
    to: UnixMillis,
    filters: FiltersView<'a>,
    status: &'static str,
    rows_done: u64,
    rows_estimated: Option<u64>,
    percent: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    created_at: UnixMillis,
    finished_at: Option<UnixMillis>,
    expires_at: Option<UnixMillis>,
    size_bytes: Option<u64>,
    status_url: String,
    /// Once done.
    #[serde(skip_serializing_if = "Option::is_none")]
    download_url: Option<String>,
}

#[derive(Serialize)]
struct FiltersView<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sku: Option<&'a str>,
}

impl<'a> From<&'a Report> for ReportView<'a> {
    fn from(report: &'a Report) -> Self {
        let done = report.status == ordermill_core::report::ReportStatus::Done;
        ReportView {
            report_id: report.id,
            kind: report.spec.kind.as_str(),
            format: report.spec.format.as_str(),
            from: report.spec.from,
            to: report.spec.to,
            filters: FiltersView {
                status: report.spec.status.map(OrderStatus::as_str),
                sku: report.spec.sku.as_ref().map(Sku::as_str),
            },
            status: report.status.as_str(),
            rows_done: report.rows_done,
            rows_estimated: report.rows_estimated,
            percent: report.percent(),
            error: report.error.as_deref(),
            created_at: report.created_at,
            finished_at: report.finished_at,
            expires_at: report.expires_at,
            size_bytes: report.size_bytes,
            status_url: format!("/api/reports/{}", report.id),
            download_url: done.then(|| format!("/api/reports/{}/download", report.id)),
        }
    }
}

fn report_error(error: ReportError) -> ApiError {
    match error {
        ReportError::NotFound(_) => {
            ApiError::new(StatusCode::NOT_FOUND, "report_not_found", error.to_string())
        }
        ReportError::NotReady { .. } => {
            ApiError::new(StatusCode::CONFLICT, "not_ready", error.to_string())
        }
        ReportError::Store(cause) => {
            tracing::error!(error = %cause, "A report request failed on the store.");
            ApiError::unavailable(
                "store_unavailable",
                "reports cannot be read or asked for right now; retry shortly",
                1,
            )
        }
    }
}

fn report_id(path: Result<Path<String>, PathRejection>) -> Result<ReportId, ApiError> {
    let Path(id) = path
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_report_id", e.body_text()))?;
    ReportId::parse(&id)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.code(), e.to_string()))
}

#[utoipa::path(
    post,
    path = "/api/reports",
    tag = "reports",
    summary = "Ask for a report",
    request_body = super::openapi::ReportInput,
    responses(
        (status = 202, description = "Queued: durable, runs on a consumer of reports", body = super::openapi::ReportStatusView),
        (status = 400, description = "malformed_json", body = super::openapi::ErrorBody),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorBody),
        (status = 422, description = "invalid_report_kind, invalid_report_format, invalid_report_range, invalid_report_filter, invalid_sku, invalid_request", body = super::openapi::ErrorBody),
        (status = 503, description = "store_unavailable", body = super::openapi::ErrorBody)
    ),
    security(("merchant_token" = []), ("admin_token" = []))
)]
pub(super) async fn create(
    State(state): State<AppState>,
    _: ReportReader,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let request: ReportRequest = body::parse(body)?;
    let spec = spec(&request)?;
    let report = state.reports.request(spec).await.map_err(report_error)?;
    let mut response =
        (StatusCode::ACCEPTED, axum::Json(ReportView::from(&report))).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/api/reports/{}", report.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/api/reports/{id}",
    tag = "reports",
    summary = "A report's status and progress",
    params(("id" = super::openapi::Id, Path, description = "The report id")),
    responses(
        (status = 200, description = "The report", body = super::openapi::ReportStatusView),
        (status = 400, description = "invalid_report_id", body = super::openapi::ErrorBody),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorBody),
        (status = 404, description = "report_not_found", body = super::openapi::ErrorBody),
        (status = 503, description = "store_unavailable", body = super::openapi::ErrorBody)
    ),
    security(("merchant_token" = []), ("admin_token" = []))
)]
pub(super) async fn show(
    State(state): State<AppState>,
    _: ReportReader,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let report = state.reports.get(report_id(id)?).await.map_err(report_error)?;
    Ok(axum::Json(ReportView::from(&report)).into_response())
}

#[utoipa::path(
    get,
    path = "/api/reports/{id}/download",
    tag = "reports",
    summary = "A done report's file",
    params(("id" = super::openapi::Id, Path, description = "The report id")),
    responses(
        (status = 200, description = "The file (text/csv or XLSX), streamed, with Content-Disposition", content_type = "application/octet-stream", body = String),
        (status = 400, description = "invalid_report_id", body = super::openapi::ErrorBody),
        (status = 401, description = "unauthorized", body = super::openapi::ErrorBody),
        (status = 404, description = "report_not_found", body = super::openapi::ErrorBody),
        (status = 409, description = "not_ready", body = super::openapi::ErrorBody),
        (status = 503, description = "store_unavailable", body = super::openapi::ErrorBody)
    ),
    security(("merchant_token" = []), ("admin_token" = []))
)]
pub(super) async fn download(
    State(state): State<AppState>,
    _: ReportReader,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let id = report_id(id)?;
    let report = state.reports.downloadable(id).await.map_err(report_error)?;
    // The first chunk before the headers: a file that is gone is a clean 404, not a cut stream.
    let first = state.reports.chunk(id, 0).await.map_err(|e| report_error(e.into()))?;
    let Some(first) = first else {
        return Err(report_error(ReportError::NotFound(id)));
    };
    let reports = state.reports.clone();
    let rest = futures_lite::stream::unfold(Some(1u64), move |next| {
        let reports = reports.clone();
        async move {
            let index = next?;
            match reports.chunk(id, index).await {
                Ok(Some(chunk)) => {
                    Some((Ok::<_, std::io::Error>(Bytes::from(chunk)), Some(index + 1)))
                }
                Ok(None) => None,
                Err(error) => {
                    tracing::error!(report_id = %id, error = %error, "A report download was cut: the file store failed.");
                    Some((Err(std::io::Error::other(error.to_string())), None))
                }
            }
        }
    });
    let chunks = futures_lite::StreamExt::chain(
        futures_lite::stream::once(Ok::<_, std::io::Error>(Bytes::from(first))),
        rest,
    );
    let name = report.spec.file_name(id);
    let mut response = Response::new(Body::from_stream(chunks));
    let headers = response.headers_mut();
    headers
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(report.spec.format.content_type()));
    if let Ok(disposition) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, disposition);
    }
    if let Some(size) = report.size_bytes {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    Ok(response)
}
