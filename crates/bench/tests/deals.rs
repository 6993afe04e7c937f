//! `bench run --deals` against a fake deals API, in-process: the deals are opened first with
//! the merchant token and the asked group size, and every request joins one of them, once per
//! customer.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use ordermill_bench::{RunArgs, run};
use serde_json::{Value, json};

#[derive(Default)]
struct Fake {
    opened: Mutex<Vec<String>>,
    joins: Mutex<Vec<(String, String)>>,
}

fn merchant(headers: &HeaderMap) -> bool {
    headers.get("authorization").is_some_and(|v| v == "Bearer m-token")
}

/// Accepts any catalog write: what is checked here is opening the deals.
async fn put_product() -> StatusCode {
    StatusCode::OK
}

async fn open(State(fake): State<Arc<Fake>>, headers: HeaderMap, body: String) -> Response {
    if !merchant(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!((body["sku"].as_str(), body["group_size"].as_u64()), (Some("bench-0"), Some(7)));
    let mut opened = fake.opened.lock().unwrap();
    let id = format!("deal-{}", opened.len());
    opened.push(id.clone());
    (StatusCode::CREATED, axum::Json(json!({"deal_id": id}))).into_response()
}

async fn join(State(fake): State<Arc<Fake>>, Path(id): Path<String>, body: String) -> Response {
    let body: Value = serde_json::from_str(&body).unwrap();
    let customer = body["customer_id"].as_str().unwrap().to_owned();
    fake.joins.lock().unwrap().push((id, customer));
    (StatusCode::CREATED, axum::Json(json!({"order": {"order_id": "o"}}))).into_response()
}

async fn spawn_fake(fake: Arc<Fake>) -> SocketAddr {
    let router = Router::new()
        .route("/api/products/{sku}", put(put_product))
        .route("/api/deals", post(open))
        .route("/api/deals/{id}/join", post(join))
        .with_state(fake);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deals_run_opens_its_deals_then_joins_them_once_per_customer() {
    let fake = Arc::new(Fake::default());
    let addr = spawn_fake(fake.clone()).await;
    let args = RunArgs {
        target: format!("http://{addr}"),
        connections: 4,
        duration: Duration::from_millis(500),
        skus: 1,
        hot_skus: 1,
        setup: true,
        merchant_token: Some("m-token".into()),
        deals: Some(5),
        group_size: 7,
        quiet: true,
        ..RunArgs::default()
    };
    let report = run(args).await.unwrap();

    let opened: HashSet<String> = fake.opened.lock().unwrap().iter().cloned().collect();
    assert_eq!(opened.len(), 5);
    let joins = fake.joins.lock().unwrap().clone();
    assert!(joins.len() > 20, "{} joins", joins.len());
    // Requests cut off by the end of the run may have reached the server unanswered.
    let (created, cut) = (report.run.responses.created, report.run.unfinished);
    assert!((created..=created + cut).contains(&(joins.len() as u64)), "{:#?}", report.run);
    let deals: HashSet<&String> = joins.iter().map(|(deal, _)| deal).collect();
    assert_eq!(deals, opened.iter().collect(), "every deal joined, no other");
    let customers: HashSet<&String> = joins.iter().map(|(_, customer)| customer).collect();
    assert_eq!(customers.len(), joins.len(), "each customer joins once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deals_refused_for_want_of_the_merchant_token_say_so_and_send_no_load() {
    let fake = Arc::new(Fake::default());
    let addr = spawn_fake(fake.clone()).await;
    let args = RunArgs {
        target: format!("http://{addr}"),
        connections: 2,
        skus: 1,
        hot_skus: 1,
        setup: true,
        deals: Some(3),
        quiet: true,
        ..RunArgs::default()
    };
    let error = run(args).await.unwrap_err().to_string();
    assert!(error.contains("opening deals") && error.contains("merchant token"), "{error}");
    assert!(fake.joins.lock().unwrap().is_empty());
}
