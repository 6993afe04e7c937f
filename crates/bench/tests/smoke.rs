//! The load generator against the ceiling server, in-process: no external service needed.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::net::SocketAddr;
use std::time::Duration;

use ordermill_bench::run::report::Mode;
use ordermill_bench::{BenchError, Report, RunArgs, run};

async fn spawn_ceiling() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, ordermill_bench::ceiling::router()).await });
    addr
}

fn args(addr: SocketAddr) -> RunArgs {
    RunArgs {
        target: format!("http://{addr}"),
        connections: 4,
        duration: Duration::from_secs(1),
        skus: 100,
        quiet: true,
        ..RunArgs::default()
    }
}

fn assert_consistent(report: &Report) {
    let run = &report.run;
    assert_eq!(run.responses.total(), run.requests, "{run:#?}");
    let o = &run.orders;
    assert_eq!(o.sent, o.created + o.conflict + o.rejected, "{run:#?}");
    let l = &run.latency_ms;
    assert!(l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p99_9 && l.p99_9 <= l.max, "{l:#?}");
    assert_eq!(l.samples, run.responses.answered());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_loop_run_against_the_ceiling_adds_up() {
    let addr = spawn_ceiling().await;
    let report = run(args(addr)).await.unwrap();
    assert_consistent(&report);
    let run = &report.run;
    assert_eq!(run.mode, Mode::Closed);
    assert!(run.responses.created > 0, "{run:#?}");
    assert_eq!(run.responses.connection_errors, 0, "{run:#?}");
    assert_eq!(run.orders.created, run.responses.created);
    assert!(run.throughput.requests_per_sec > 0.0);
    assert!(run.latency_ms.p50 > 0.0);
    assert!(!run.interrupted);
    assert!(report.reference.is_none());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("report.json");
    report.write_json(&path).unwrap();
    let back: Report = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(back, report);
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(json["run"]["responses"]["201"], run.responses.created);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_run_at_200_per_second_sends_about_200_in_a_second() {
    let addr = spawn_ceiling().await;
    let report = run(RunArgs { rate: Some(200), ..args(addr) }).await.unwrap();
    assert_consistent(&report);
    assert_eq!(report.run.mode, Mode::Open { rate: 200 });
    let sent = report.run.requests + report.run.unfinished;
    assert!((100..=300).contains(&sent), "sent {sent}: {:#?}", report.run);
    // A connection's next request is due 20 ms after its last, and the ceiling answers in
    // well under that: almost everything goes out on time.
    assert!(report.run.sent_late * 10 <= sent, "{:#?}", report.run);
    assert!(report.to_string().contains("went out late"), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_loop_whose_answers_outlast_a_connections_turn_says_requests_went_out_late() {
    // 50 ms per answer, 2 connections at 200 req/s: each connection's next request is due
    // 10 ms after its last, so nearly every one waits for the answer before it.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let slow = ordermill_bench::ceiling::router().layer(axum::middleware::from_fn(
        |request: axum::extract::Request, next: axum::middleware::Next| async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            next.run(request).await
        },
    ));
    tokio::spawn(async move { axum::serve(listener, slow).await });
    let report = run(RunArgs { rate: Some(200), connections: 2, ..args(addr) }).await.unwrap();
    assert_consistent(&report);
    let run = &report.run;
    let sent = run.requests + run.unfinished;
    assert!(sent > 0 && run.sent_late * 2 >= sent, "{run:#?}");
    // Their latency counts from the intended send: the wait in the generator is charged.
    assert!(run.latency_ms.p90 > 100.0, "{run:#?}");
    let text = report.to_string();
    assert!(text.contains("went out late") && text.contains("more --connections"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reference_run_is_compared_with_the_main_one() {
    let target = spawn_ceiling().await;
    let reference = spawn_ceiling().await;
    let args = RunArgs {
        duration: Duration::from_millis(300),
        reference: Some(format!("http://{reference}")),
        ..args(target)
    };
    let report = run(args).await.unwrap();
    let comparison = report.reference.as_ref().unwrap();
    assert_eq!(comparison.run.target, format!("http://{reference}"));
    assert!(comparison.run.responses.created > 0);
    assert!(comparison.throughput_ratio.is_some_and(|r| r > 0.0));
    assert!(report.to_string().contains("ratio to reference"));
    // A target without queue depths (here a bare ceiling) is not waited for.
    assert_eq!(comparison.target_settled, ordermill_bench::run::report::Settled::Unknown);
}

#[tokio::test]
async fn a_target_with_nothing_listening_is_named_with_a_hint() {
    // Bind and drop to get a port that nothing listens on.
    let addr = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let error = run(args(addr)).await.unwrap_err();
    assert!(matches!(error, BenchError::Unreachable { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&format!("http://{addr}")), "{message}");
    assert!(message.contains("ordermill serve"), "{message}");
}

#[tokio::test]
async fn setup_against_a_server_without_a_products_api_fails_before_any_load() {
    let addr = spawn_ceiling().await;
    let error = run(RunArgs { setup: true, ..args(addr) }).await.unwrap_err();
    assert!(matches!(error, BenchError::Setup { .. }), "{error:?}");
    assert!(error.to_string().contains("PUT /api/products/bench-"), "{error}");
}

#[tokio::test]
async fn a_batch_run_against_a_server_without_batches_counts_every_order_rejected() {
    let addr = spawn_ceiling().await;
    let args = RunArgs { batch: 10, duration: Duration::from_millis(300), ..args(addr) };
    let report = run(args).await.unwrap();
    assert_consistent(&report);
    let run = &report.run;
    assert!(run.responses.client_error > 0, "{run:#?}");
    assert_eq!(run.orders.sent, run.responses.answered() * 10);
    assert_eq!(run.orders.created, 0);
    assert!(report.to_string().contains("--setup"));
}

/// A target that remembers every `Idempotency-Key` it was sent and answers 201.
async fn spawn_key_recorder() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use axum::http::{HeaderMap, StatusCode};
    let keys = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = keys.clone();
    let router = axum::Router::new().route(
        "/api/orders",
        axum::routing::post(move |headers: HeaderMap| {
            let seen = seen.clone();
            async move {
                if let Some(key) = headers.get("idempotency-key") {
                    seen.lock().unwrap().push(key.to_str().unwrap().to_owned());
                }
                (StatusCode::CREATED, "{}")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, keys)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_idempotency_keys_every_order_carries_a_key_no_other_order_or_run_has() {
    let (addr, recorded) = spawn_key_recorder().await;
    let keyed =
        || RunArgs { idempotency_keys: true, duration: Duration::from_millis(300), ..args(addr) };
    let first = run(keyed()).await.unwrap();
    let second = run(keyed()).await.unwrap();
    let sent = first.run.requests + second.run.requests;
    let keys = recorded.lock().unwrap().clone();
    assert!(
        sent > 0 && keys.len() as u64 >= sent,
        "{} keys for {sent} answered orders",
        keys.len()
    );
    let distinct: std::collections::HashSet<_> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "a key repeated, within a run or across the two");
    assert!(first.run.idempotency_keys && first.to_string().contains("Idempotency-Key"));

    let plain = run(RunArgs { duration: Duration::from_millis(300), ..args(addr) }).await.unwrap();
    assert!(plain.run.requests > 0 && !plain.run.idempotency_keys);
    assert_eq!(recorded.lock().unwrap().len(), keys.len(), "the keyless run sent none");
}
