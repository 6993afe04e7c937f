//! `PUT /api/products/{sku}`, `GET /api/products/{sku}`, `GET /api/products`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ordermill_core::{Money, ProductName, Sku, StockLevel, ValidationError};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::AppState;
use super::auth::Merchant;
use super::body;
use super::error::ApiError;
use crate::services::catalog::StockedProduct;
use crate::services::purchase_limits::{MAX_LIMIT, PurchaseLimits};

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/products", get(list)).route("/api/products/{sku}", get(show).put(put))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProductRequest {
    name: Option<Value>,
    price: Option<Value>,
    stock: Option<Value>,
    /// Absent: keep the current limit. `null`: no limit. A number: at most that many units
    /// per customer (flash-sale rule).
    #[serde(default, deserialize_with = "present")]
    per_customer_limit: Option<Value>,
}

/// Tells a field sent as `null` (Some(Null)) from one not sent (None).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

fn limit(value: Option<&Value>) -> Result<Option<Option<u32>>, ValidationError> {
    let invalid = |got: String| ValidationError::InvalidLimit { got, max: MAX_LIMIT };
    match value {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::Number(n)) => match n.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(Some(Some(n))),
            _ => Err(invalid(n.to_string())),
        },
        Some(other) => Err(invalid(other.to_string().chars().take(40).collect())),
    }
}

/// A product as clients see it.
#[derive(Serialize)]
struct ProductView<'a> {
    sku: &'a str,
    name: &'a str,
    price: Money,
    /// Units on hand (stock of record), including units held by accepted orders.
    stock: i64,
    /// Units that can still be sold.
    stock_available: i64,
    /// Most units one customer may hold (flash-sale rule); `null` for no limit.
    per_customer_limit: Option<u32>,
}

impl<'a> ProductView<'a> {
    fn new(p: &'a StockedProduct, limits: &PurchaseLimits) -> Self {
        ProductView {
            sku: p.product.sku.as_str(),
            name: p.product.name.as_str(),
            price: p.product.price,
            stock: p.product.stock.get(),
            stock_available: p.available,
            per_customer_limit: limits.limit(&p.product.sku),
        }
    }
}

fn sku_from_path(path: Result<Path<String>, PathRejection>) -> Result<Sku, ApiError> {
    let Path(sku) =
        path.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "invalid_sku", e.body_text()))?;
    Ok(Sku::parse(sku)?)
}

fn not_found(sku: &Sku) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "product_not_found",
        format!("no product with sku {sku}; create it with PUT /api/products/{sku}"),
    )
}

#[utoipa::path(
    put,
    path = "/api/products/{sku}",
    tag = "catalog",
    summary = "Create or replace a product",
    request_body = super::openapi::ProductInput,
    params(
        ("sku" = super::openapi::Sku, Path)
    ),
    responses(
        (status = 201, description = "Created", body = super::openapi::Product),
        (status = 200, description = "Replaced", body = super::openapi::Product),
        (status = 400, description = "malformed_json", body = super::openapi::ErrorBody),
        (status = 401, description = "unauthorized (no or a wrong merchant token)", body = super::openapi::ErrorBody),
        (status = 409, description = "stock_below_held", body = super::openapi::ErrorBody),
        (status = 422, description = "invalid_sku, invalid_name, invalid_price, invalid_stock, invalid_limit, invalid_request", body = super::openapi::ErrorBody),
        (status = 503, description = "store_unavailable, cache_unavailable", body = super::openapi::ErrorBody)
    ),
    security(("merchant_token" = []))
)]
pub(super) async fn put(
    State(state): State<AppState>,
    _merchant: Merchant,
    path: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let sku = sku_from_path(path)?;
    let request: ProductRequest = body::parse(body)?;
    let name = match request.name {
        Some(Value::String(text)) => ProductName::parse(text)?,
        _ => return Err(ValidationError::InvalidProductName.into()),
    };
    let price = match &request.price {
        Some(Value::String(text)) => Money::parse("price", text)?,
        // A JSON number would be read as a float somewhere along the way; refuse it early.
        other => {
            return Err(ValidationError::InvalidMoney {
                field: "price",
                got: other.as_ref().map(|v| v.to_string()).unwrap_or_default(),
                max: "999999999.99",
            }
            .into());
        }
    };
    let stock = match &request.stock {
        Some(Value::Number(n)) => match n.as_i64() {
            Some(n) => StockLevel::parse(n)?,
            None => return Err(StockLevel::invalid(n).into()),
        },
        other => {
            return Err(StockLevel::invalid(
                other.as_ref().map(|v| v.to_string()).unwrap_or_default(),
            )
            .into());
        }
    };
    let per_customer_limit = limit(request.per_customer_limit.as_ref())?;
    let (product, created) = state.catalog.put(sku.clone(), name, price, stock).await?;
    if let Some(wanted) = per_customer_limit
        && let Err(error) = state.purchase_limits.set(&sku, wanted).await
    {
        tracing::error!(sku = %sku, error = %error, "Could not save a purchase limit; answering 503.");
        return Err(ApiError::unavailable(
            "store_unavailable",
            "the product was saved but its per_customer_limit was not; send the request again",
            1,
        ));
    }
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(ProductView::new(&product, &state.purchase_limits))).into_response())
}

#[utoipa::path(
    get,
    path = "/api/products/{sku}",
    tag = "catalog",
    summary = "One product",
    params(
        ("sku" = super::openapi::Sku, Path)
    ),
    responses(
        (status = 200, description = "The product", body = super::openapi::Product),
        (status = 422, description = "invalid_sku", body = super::openapi::ErrorBody),
        (status = 404, description = "product_not_found", body = super::openapi::ErrorBody)
    ),
    security(())
)]
pub(super) async fn show(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let sku = sku_from_path(path)?;
    match state.catalog.get(&sku).await? {
        Some(product) => {
            Ok(axum::Json(ProductView::new(&product, &state.purchase_limits)).into_response())
        }
        None => Err(not_found(&sku)),
    }
}

#[derive(Serialize)]
struct ProductList<'a> {
    products: Vec<ProductView<'a>>,
}

#[utoipa::path(
    get,
    path = "/api/products",
    tag = "catalog",
    summary = "Every product",
    responses(
        (status = 200, description = "Every product, by SKU", body = super::openapi::ProductList),
        (status = 503, description = "store_unavailable", body = super::openapi::ErrorBody)
    ),
    security(())
)]
pub(super) async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let products = state.catalog.list().await?;
    let body = ProductList {
        products: products.iter().map(|p| ProductView::new(p, &state.purchase_limits)).collect(),
    };
    Ok(axum::Json(body).into_response())
}
