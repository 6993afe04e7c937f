//! Reading JSON bodies with our own error mapping: a syntax error is 400 `malformed_json`,
//! valid JSON of the wrong shape is 422, a body over the limit is 413 — all as JSON errors.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::error::Category;

use super::error::ApiError;

/// Turns the raw body (or axum's refusal to buffer it) into `T`.
///
/// # Errors
/// 413 `payload_too_large`, 400 `malformed_json` or 422 `invalid_request`.
pub fn parse<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    from_bytes(&bytes(body)?)
}

/// The raw body, for what must see its exact bytes (a signature) before parsing it.
///
/// # Errors
/// 413 `payload_too_large` or 400 `unreadable_body`.
pub fn bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body is larger than this endpoint accepts; send fewer items or use /api/orders/batch")
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "unreadable_body", rejection.body_text())
        }
    })
}

/// Parses a raw body into `T`.
///
/// # Errors
/// 400 `malformed_json` or 422 `invalid_request`.
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|error| match error.classify() {
        Category::Data => ApiError::invalid_request(error),
        Category::Syntax | Category::Eof | Category::Io => ApiError::malformed_json(error),
    })
}
