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

/// Parses a raw body into `T`. The body must be a JSON object: serde would also read a struct
/// from an array of its fields in order, a form no client should rely on.
///
/// # Errors
/// 400 `malformed_json` or 422 `invalid_request`.
pub fn from_bytes<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| *b == b'[') {
        return Err(ApiError::invalid_request("the body must be a JSON object, not an array"));
    }
    serde_json::from_slice(bytes).map_err(|error| match error.classify() {
        Category::Data => ApiError::invalid_request(error),
        Category::Syntax | Category::Eof | Category::Io => ApiError::malformed_json(error),
    })
}

/// A list of objects (`deserialize_with`): each element must be a JSON object, not the array
/// form serde would also accept for a struct; absent or `null` is `None`.
///
/// # Errors
/// A data error (422 `invalid_request`) naming the first element that is not an object.
pub fn objects<'de, D, T>(deserializer: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    use serde::Deserialize;
    let Some(values) = Option::<Vec<serde_json::Value>>::deserialize(deserializer)? else {
        return Ok(None);
    };
    values
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            if !value.is_object() {
                return Err(serde::de::Error::custom(format!("element {i} must be an object")));
            }
            serde_json::from_value(value).map_err(serde::de::Error::custom)
        })
        .collect::<Result<Vec<T>, D::Error>>()
        .map(Some)
}

/// [`objects`] for a list that must be there.
///
/// # Errors
/// As [`objects`], and when the list is absent or `null`.
pub fn required_objects<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: DeserializeOwned,
{
    objects(deserializer)?.ok_or_else(|| serde::de::Error::custom("a list is required here"))
}
