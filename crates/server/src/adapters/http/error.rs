//! The one HTTP error type. Every 4xx/5xx body is `{"error": {"code": "...", "message": "..."}}`.
//! Causes of 5xx answers are logged here and never sent to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ordermill_core::ValidationError;
use serde::Serialize;

use crate::services::catalog::CatalogError;
use crate::services::deals::DealError;
use crate::services::intake::IntakeError;

/// An error answer: status, stable code, human message.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after_secs: Option<u32>,
    challenge: Option<&'static str>,
}

#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

/// The `error` object of an error body, also used per order in batch results.
#[derive(Serialize)]
pub struct Detail<'a> {
    /// Stable machine-readable code.
    pub code: &'a str,
    /// What went wrong and what to do, for a person, in the request's language.
    pub message: &'a str,
    /// In a language other than English: the English message, with its specifics.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
}

impl<'a> Detail<'a> {
    /// The error `code` with its English `message`, put in the request's language
    /// ([`super::messages`]).
    pub fn localized(code: &'a str, message: &'a str) -> Self {
        debug_assert!(
            super::messages::zh(code).is_some(),
            "error code {code:?} has no entry in messages::CATALOGUE"
        );
        match (super::messages::current(), super::messages::zh(code)) {
            (super::messages::Lang::Zh, Some(zh)) => {
                Detail { code, message: zh, detail: Some(message) }
            }
            _ => Detail { code, message, detail: None },
        }
    }
}

impl ApiError {
    /// An error with any status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), retry_after_secs: None, challenge: None }
    }

    /// 400 `malformed_json`.
    pub fn malformed_json(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("request body is not valid JSON: {detail}"),
        )
    }

    /// 422 `invalid_request`: valid JSON of the wrong shape.
    pub fn invalid_request(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!("request body does not match the schema: {detail}"),
        )
    }

    /// 404 `not_found` for a route that does not exist.
    pub fn no_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such endpoint; see the README for the API",
        )
    }

    /// 401 `unauthorized` with a `WWW-Authenticate` challenge.
    pub fn unauthorized(message: impl Into<String>, challenge: &'static str) -> Self {
        ApiError {
            challenge: Some(challenge),
            ..Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
        }
    }

    /// The same error with a `WWW-Authenticate` challenge (every 401 carries one).
    pub fn with_challenge(self, challenge: &'static str) -> Self {
        ApiError { challenge: Some(challenge), ..self }
    }

    /// The same error with a `Retry-After` header of `secs`.
    pub fn with_retry_after(self, secs: u32) -> Self {
        ApiError { retry_after_secs: Some(secs), ..self }
    }

    /// 503 with a `Retry-After` header.
    pub fn unavailable(
        code: &'static str,
        message: impl Into<String>,
        retry_after_secs: u32,
    ) -> Self {
        ApiError {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<ValidationError> for ApiError {
    fn from(error: ValidationError) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, error.code(), error.to_string())
    }
}

impl From<IntakeError> for ApiError {
    fn from(error: IntakeError) -> Self {
        let status = match &error {
            IntakeError::Invalid(_)
            | IntakeError::UnknownSku(_)
            | IntakeError::IdempotencyMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            IntakeError::OutOfStock(_)
            | IntakeError::IdempotencyInProgress
            | IntakeError::LimitExceeded { .. }
            | IntakeError::LimitReached { .. } => StatusCode::CONFLICT,
            IntakeError::Unavailable(cause) => {
                tracing::error!(cause = %cause, "Order intake failed; answering 503.");
                return Self::unavailable(
                    error.code(),
                    "orders cannot be stored right now; nothing was written, retry shortly",
                    1,
                );
            }
            IntakeError::ShuttingDown
            | IntakeError::Overloaded { .. }
            | IntakeError::Shed { .. }
            | IntakeError::SlowCommit { .. }
            | IntakeError::Full { .. }
            | IntakeError::StockRecounting => {
                return Self::unavailable(error.code(), error.to_string(), 1);
            }
        };
        Self::new(status, error.code(), error.to_string())
    }
}

impl From<DealError> for ApiError {
    fn from(error: DealError) -> Self {
        match error {
            DealError::Intake(intake) => intake.into(),
            DealError::NotFound(_) => {
                Self::new(StatusCode::NOT_FOUND, "deal_not_found", error.to_string())
            }
            DealError::Refused(refusal) => {
                Self::new(StatusCode::CONFLICT, refusal.code(), refusal.to_string())
            }
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(error: CatalogError) -> Self {
        match error {
            CatalogError::StockBelowHeld { .. } => {
                Self::new(StatusCode::CONFLICT, "stock_below_held", error.to_string())
            }
            CatalogError::Store(cause) => {
                tracing::error!(error = %cause, "Catalog write failed; answering 503.");
                Self::unavailable(
                    "store_unavailable",
                    "the catalog cannot be written right now; nothing changed, retry shortly",
                    1,
                )
            }
            CatalogError::Cache(cause) => {
                tracing::error!(error = %cause, "Hot-stock cache failed; answering 503.");
                Self::unavailable(
                    "cache_unavailable",
                    "stock cannot be read or changed right now; retry shortly",
                    1,
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_client_error() {
            // Sold out is business as usual in a flash sale: counted, not logged per request.
            if self.code == "out_of_stock" {
                tracing::debug!(status = self.status.as_u16(), code = self.code, message = %self.message, "Request refused.");
            } else {
                tracing::info!(status = self.status.as_u16(), code = self.code, message = %self.message, "Request refused.");
            }
        }
        let body = Body { error: Detail::localized(self.code, &self.message) };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if let Some(challenge) = self.challenge {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        response
    }
}
