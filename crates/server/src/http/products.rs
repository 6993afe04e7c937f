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
use super::body;
use super::error::ApiError;
use crate::catalog::StockedProduct;

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
}

impl<'a> From<&'a StockedProduct> for ProductView<'a> {
    fn from(p: &'a StockedProduct) -> Self {
        ProductView {
            sku: p.product.sku.as_str(),
            name: p.product.name.as_str(),
            price: p.product.price,
            stock: p.product.stock.get(),
            stock_available: p.available,
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

async fn put(
    State(state): State<AppState>,
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
    let (product, created) = state.catalog.put(sku, name, price, stock).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, axum::Json(ProductView::from(&product))).into_response())
}

async fn show(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let sku = sku_from_path(path)?;
    match state.catalog.get(&sku).await? {
        Some(product) => Ok(axum::Json(ProductView::from(&product)).into_response()),
        None => Err(not_found(&sku)),
    }
}

#[derive(Serialize)]
struct ProductList<'a> {
    products: Vec<ProductView<'a>>,
}

async fn list(State(state): State<AppState>) -> Result<Response, ApiError> {
    let products = state.catalog.list().await?;
    let body = ProductList { products: products.iter().map(ProductView::from).collect() };
    Ok(axum::Json(body).into_response())
}
