//! The downstream stubs and the synchronous baseline, in-process: no external service needed.
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use ordermill_bench::stubs::{Service, StubConfig, StubStats, Stubs};
use ordermill_bench::sync_baseline::{self, SyncConfig};
use serde_json::{Value, json};

async fn spawn(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    addr
}

fn quick(payment_fail_rate: f64) -> StubConfig {
    StubConfig {
        inventory_latency: Duration::from_millis(1),
        payment_latency: Duration::from_millis(1),
        notify_latency: Duration::from_millis(1),
        payment_fail_rate,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().timeout(Duration::from_secs(10)).build().unwrap()
}

async fn post(client: &reqwest::Client, addr: SocketAddr, path: &str) -> u16 {
    let url = format!("http://{addr}{path}");
    client.post(url).json(&json!({"order_id": "x"})).send().await.unwrap().status().as_u16()
}

async fn stats(client: &reqwest::Client, addr: SocketAddr) -> StubStats {
    let url = format!("http://{addr}/admin/stats");
    client.get(url).send().await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn every_stub_answers_200_when_up_and_nothing_fails() {
    let addr = spawn(ordermill_bench::stubs::router(quick(0.0))).await;
    let client = client();
    for service in Service::ALL {
        for _ in 0..5 {
            assert_eq!(post(&client, addr, &format!("/{service}")).await, 200, "{service}");
        }
    }
    let stats = stats(&client, addr).await;
    for service in Service::ALL {
        let s = stats.service(service);
        assert_eq!((s.ok, s.failed, s.refused_down), (5, 0, 0), "{service}");
    }
}

#[tokio::test]
async fn payment_fails_with_503_at_a_fail_rate_of_one_and_only_payment_does() {
    let addr = spawn(ordermill_bench::stubs::router(quick(1.0))).await;
    let client = client();
    for _ in 0..5 {
        assert_eq!(post(&client, addr, "/payment").await, 503);
    }
    assert_eq!(post(&client, addr, "/inventory").await, 200);
    assert_eq!(post(&client, addr, "/notify").await, 200);
    let stats = stats(&client, addr).await;
    assert_eq!((stats.payment.ok, stats.payment.failed), (0, 5));
}

#[tokio::test]
async fn a_service_taken_down_answers_503_until_brought_back_up_and_the_others_stay_up() {
    let stubs = Stubs::new(quick(0.0));
    let addr = spawn(stubs.router()).await;
    let client = client();
    assert_eq!(post(&client, addr, "/admin/down/payment").await, 200);
    assert!(stubs.is_down(Service::Payment));
    assert_eq!(post(&client, addr, "/payment").await, 503);
    assert_eq!(post(&client, addr, "/inventory").await, 200);
    assert_eq!(post(&client, addr, "/notify").await, 200);

    assert_eq!(post(&client, addr, "/admin/up/payment").await, 200);
    assert!(!stubs.is_down(Service::Payment));
    assert_eq!(post(&client, addr, "/payment").await, 200);
    let payment = stubs.stats().payment;
    assert_eq!((payment.ok, payment.refused_down), (1, 1));

    // The in-process handle toggles the same state.
    stubs.set_down(Service::Notify, true);
    assert_eq!(post(&client, addr, "/notify").await, 503);
}

#[tokio::test]
async fn toggling_an_unknown_service_is_a_json_404() {
    let addr = spawn(ordermill_bench::stubs::router(quick(0.0))).await;
    let reply = client().post(format!("http://{addr}/admin/down/billing")).send().await.unwrap();
    assert_eq!(reply.status(), 404);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unknown_service");
}

/// The stubs, a handle on them, and a sync baseline calling them.
async fn baseline() -> (Stubs, SocketAddr) {
    let stubs = Stubs::new(quick(0.0));
    let stubs_addr = spawn(stubs.router()).await;
    let config = SyncConfig::from_stubs(stubs_addr, Duration::from_secs(5));
    let addr = spawn(sync_baseline::router(config).unwrap()).await;
    (stubs, addr)
}

fn order() -> Value {
    json!({"customer_id": "c-1", "items": [{"sku": "bench-1", "quantity": 2}]})
}

#[tokio::test]
async fn the_sync_baseline_answers_201_after_calling_each_stub_once() {
    let (stubs, addr) = baseline().await;
    let reply =
        client().post(format!("http://{addr}/api/orders")).json(&order()).send().await.unwrap();
    assert_eq!(reply.status(), 201);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["status"], "confirmed");
    assert_eq!(body["total"], "39.98");
    assert!(body["order_id"].as_str().is_some());
    let stats = stubs.stats();
    for service in Service::ALL {
        assert_eq!(stats.service(service).ok, 1, "{service}");
    }
}

#[tokio::test]
async fn the_sync_baseline_fails_the_order_with_502_while_payment_is_down() {
    let (stubs, addr) = baseline().await;
    stubs.set_down(Service::Payment, true);
    let reply =
        client().post(format!("http://{addr}/api/orders")).json(&order()).send().await.unwrap();
    assert_eq!(reply.status(), 502);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payment_failed");
    let stats = stubs.stats();
    // Inventory was called first and not given back: the "before" design does not compensate.
    assert_eq!(stats.inventory.ok, 1);
    assert_eq!(stats.notify.ok, 0);
}

#[tokio::test]
async fn the_sync_baseline_answers_503_when_a_stub_does_not_answer_at_all() {
    // Bind and drop to get a port that nothing listens on.
    let gone = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let config = SyncConfig::from_stubs(gone, Duration::from_secs(5));
    let addr = spawn(sync_baseline::router(config).unwrap()).await;
    let reply =
        client().post(format!("http://{addr}/api/orders")).json(&order()).send().await.unwrap();
    assert_eq!(reply.status(), 503);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["error"]["code"], "inventory_unavailable");
}

#[tokio::test]
async fn the_sync_baseline_refuses_bad_input_with_a_4xx() {
    let (stubs, addr) = baseline().await;
    let client = client();
    let url = format!("http://{addr}/api/orders");
    let reply = client.post(&url).body("{not json").send().await.unwrap();
    assert_eq!(reply.status(), 400);
    let reply =
        client.post(&url).json(&json!({"customer_id": "c", "items": []})).send().await.unwrap();
    assert_eq!(reply.status(), 422);
    assert_eq!(stubs.stats(), StubStats::default(), "nothing was called for a refused order");
}
