//! The reference ceiling: what a do-nothing order service costs on this machine.
//!
//! It parses the order body into the same shape ordermill accepts and answers 201 with a
//! body of the same shape and size as ordermill's, so the ratio between the two measures
//! what ordermill adds per order (validation, pricing, reservation, durable commit), not
//! JSON formatting.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use crate::order_request::OrderRequest;
use serde::Serialize;
use std::sync::Arc;

#[derive(Serialize)]
struct Line<'a> {
    sku: &'a str,
    quantity: u32,
    unit_price: &'static str,
    line_total: &'static str,
}

#[derive(Serialize)]
struct Created<'a> {
    order_id: String,
    status: &'static str,
    customer_id: &'a str,
    total: &'static str,
    items: Vec<Line<'a>>,
    created_at: &'static str,
}

async fn create(State(seq): State<Arc<AtomicU64>>, body: axum::body::Bytes) -> Response {
    let Ok(order) = serde_json::from_slice::<OrderRequest>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let n = seq.fetch_add(1, Ordering::Relaxed);
    let created = Created {
        order_id: format!("01a20000-0000-7000-8000-{n:012x}"),
        status: "accepted",
        customer_id: &order.customer_id,
        total: "19.99",
        items: order
            .items
            .iter()
            .map(|i| Line {
                sku: &i.sku,
                quantity: i.quantity,
                unit_price: "19.99",
                line_total: "19.99",
            })
            .collect(),
        created_at: "2026-11-22T05:00:00.000Z",
    };
    (StatusCode::CREATED, axum::Json(created)).into_response()
}

/// The ceiling's routes: `POST /api/orders`.
pub fn router() -> Router {
    Router::new().route("/api/orders", post(create)).with_state(Arc::new(AtomicU64::new(0)))
}

/// Serves the ceiling on `listen` until `shutdown` completes.
///
/// # Errors
/// When the address cannot be bound or serving fails.
pub async fn serve(
    listen: SocketAddr,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "Ceiling reference server is serving POST /api/orders.");
    axum::serve(listener, router()).with_graceful_shutdown(shutdown).await
}
