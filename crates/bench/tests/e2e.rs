//! `bench run --e2e` against a fake order service, in-process: the sample is taken from the
//! 201s, each sampled order is read back until final, and its latency comes from the
//! server's timestamps.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ordermill_bench::{RunArgs, run};
use serde_json::json;

/// A fake ordermill: every order is accepted; order n is confirmed (n % 10) × 100 ms after its
/// creation, except every 50th, which is cancelled, and order 7, which never becomes final.
/// It becomes final on its second read, so the bench has to poll again.
#[derive(Default)]
struct Fake {
    seq: AtomicU64,
    reads: Mutex<HashMap<u64, u32>>,
}

async fn create(State(fake): State<Arc<Fake>>) -> Response {
    let n = fake.seq.fetch_add(1, Ordering::Relaxed);
    (StatusCode::CREATED, axum::Json(json!({"order_id": format!("o-{n}"), "status": "accepted"})))
        .into_response()
}

async fn read(State(fake): State<Arc<Fake>>, Path(id): Path<String>) -> Response {
    let Some(n) = id.strip_prefix("o-").and_then(|n| n.parse::<u64>().ok()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let reads = {
        let mut reads = fake.reads.lock().unwrap();
        let count = reads.entry(n).or_default();
        *count += 1;
        *count
    };
    let created = "2026-11-22T05:00:00.000Z";
    let (status, at) = if n == 7 || reads < 2 {
        ("accepted", created.to_owned())
    } else if n % 50 == 49 {
        ("cancelled", "2026-11-22T05:00:00.010Z".to_owned())
    } else {
        ("confirmed", format!("2026-11-22T05:00:00.{:03}Z", (n % 10) * 100))
    };
    let mut history = vec![json!({"status": "accepted", "at": created})];
    if status != "accepted" {
        history.push(json!({"status": status, "at": at}));
    }
    axum::Json(json!({"order_id": id, "status": status, "created_at": created, "history": history}))
        .into_response()
}

async fn spawn_fake() -> SocketAddr {
    let router = Router::new()
        .route("/api/orders", post(create))
        .route("/api/orders/{id}", get(read))
        .with_state(Arc::new(Fake::default()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn args(addr: SocketAddr) -> RunArgs {
    RunArgs {
        target: format!("http://{addr}"),
        connections: 4,
        duration: Duration::from_millis(500),
        skus: 10,
        e2e: true,
        e2e_sample: 40,
        e2e_wait: Duration::from_secs(2),
        quiet: true,
        ..RunArgs::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_of_accepted_orders_is_timed_by_the_servers_clock() {
    let addr = spawn_fake().await;
    let report = run(args(addr)).await.unwrap();
    let e2e = report.e2e.as_ref().expect("an e2e section with --e2e");
    assert!(report.run.orders.created >= 40, "{:#?}", report.run);
    assert_eq!(e2e.sampled, 40, "{e2e:#?}");
    assert_eq!(e2e.confirmed + e2e.cancelled + e2e.not_final + e2e.unreadable, e2e.sampled);
    assert_eq!(e2e.unreadable, 0, "{e2e:#?}");
    assert!(e2e.confirmed > 0, "{e2e:#?}");
    let l = e2e.latency_ms;
    assert_eq!(l.samples, e2e.confirmed);
    assert!(l.p50 <= l.p99 && l.p99 <= l.max, "{l:#?}");
    // Every latency is a multiple of 100 ms up to 900, as the fake stamped it.
    assert!(l.max <= 900.0 && l.max % 100.0 == 0.0, "{l:#?}");
    assert!(e2e.waited_secs <= e2e.wait_limit_secs + 1.0, "{e2e:#?}");

    let text = report.to_string();
    assert!(text.contains("accept→confirmed"), "{text}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["e2e"]["sampled"], 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_that_never_becomes_final_is_counted_not_final_after_the_wait() {
    let addr = spawn_fake().await;
    // One connection and a sample larger than the run: order 7 is sampled for sure.
    let args = RunArgs {
        connections: 1,
        duration: Duration::from_millis(100),
        e2e_sample: 100_000,
        e2e_wait: Duration::from_millis(600),
        ..args(addr)
    };
    let report = run(args).await.unwrap();
    let e2e = report.e2e.unwrap();
    assert_eq!(e2e.sampled, report.run.orders.created, "{e2e:#?}");
    assert_eq!(e2e.not_final, 1, "{e2e:#?}");
    assert!(e2e.waited_secs >= 0.6, "{e2e:#?}");
}

#[tokio::test]
async fn without_e2e_there_is_no_e2e_section_and_the_json_has_no_key() {
    let addr = spawn_fake().await;
    let args = RunArgs { e2e: false, duration: Duration::from_millis(200), ..args(addr) };
    let report = run(args).await.unwrap();
    assert!(report.e2e.is_none());
    let json = serde_json::to_value(&report).unwrap();
    assert!(json.get("e2e").is_none());
}
