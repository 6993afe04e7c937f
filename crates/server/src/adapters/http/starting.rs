//! What a node's port answers while the node waits for its engines at start: `/healthz` 200
//! (the process is alive and working on its start, so a liveness probe must not restart it),
//! `/readyz` 503 `not_ready` naming the engine it waits for, `/metrics`, and 503 `starting`
//! with `Retry-After` for everything else — instead of a refused connection, which a client
//! cannot tell from a node that is gone.
//!
//! Every answer closes its connection, so no client keeps a connection to this stand-in once
//! the node serves on the same port.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio::sync::watch;

use super::error::ApiError;

/// How long a client is told to wait before trying again.
const RETRY_AFTER_SECS: u32 = 2;

/// The stand-in router. `waiting` names the setting of the engine the node last failed to
/// reach (`store`, `bus` or `cache`), `None` before the first attempt has failed.
pub fn router(waiting: watch::Receiver<Option<&'static str>>, metrics: PrometheusHandle) -> Router {
    let (for_readyz, for_others) = (waiting.clone(), waiting);
    Router::new()
        .route("/healthz", get(|| std::future::ready(axum::Json(json!({"status": "starting"})))))
        .route(
            "/readyz",
            get(move || {
                let why = reason(&for_readyz);
                std::future::ready(ApiError::unavailable("not_ready", why, RETRY_AFTER_SECS))
            }),
        )
        .route("/metrics", get(move || std::future::ready(super::metrics::text(&metrics))))
        .fallback(move || {
            let why = reason(&for_others);
            std::future::ready(ApiError::unavailable("starting", why, RETRY_AFTER_SECS))
        })
        .layer(axum::middleware::map_response(close_connection))
}

fn reason(waiting: &watch::Receiver<Option<&'static str>>) -> String {
    match *waiting.borrow() {
        Some(setting) => format!(
            "this node is starting: it waits for the engine its `{setting}` setting names to be reachable; retry shortly, or send to another node"
        ),
        None => "this node is starting; retry shortly, or send to another node".to_owned(),
    }
}

async fn close_connection(mut response: Response) -> Response {
    response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    response.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt;

    async fn get_of(router: &Router, path: &str) -> (StatusCode, Response) {
        let request = Request::get(path).body(Body::empty()).expect("a literal request");
        let response = router.clone().oneshot(request).await.expect("infallible router");
        (response.status(), response)
    }

    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("small body");
        serde_json::from_slice(&bytes).expect("a JSON body")
    }

    #[tokio::test]
    async fn alive_not_ready_and_everything_else_refused_with_a_retry() {
        let (tell, waiting) = watch::channel(None);
        let router = router(waiting, crate::telemetry::install());
        let (status, response) = get_of(&router, "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body_of(response).await["status"], "starting");

        tell.send_replace(Some("store"));
        let (status, response) = get_of(&router, "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        assert_eq!(response.headers()[header::CONNECTION], "close");
        let body = body_of(response).await;
        assert_eq!(body["error"]["code"], "not_ready");
        let message = body["error"]["message"].as_str().expect("a message");
        assert!(message.contains("`store`"), "{message}");

        let (status, response) = get_of(&router, "/api/orders").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body_of(response).await["error"]["code"], "starting");

        let (status, _) = get_of(&router, "/metrics").await;
        assert_eq!(status, StatusCode::OK);
    }
}
