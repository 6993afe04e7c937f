//! Two nodes on the same real PostgreSQL, RabbitMQ and Redis: what one node's catalog writes
//! do is seen by the other, and both sell from one stock count. Skipped with a reason when the
//! `ORDERMILL_TEST_*_URL` variables are unset.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Engines, TestApp, spawn_app_on};

async fn node(engines: &Engines) -> TestApp {
    let clock = Arc::new(ordermill_core::SystemClock);
    spawn_app_on(engines.clone(), tempfile::tempdir().unwrap(), clock, |s| {
        s.catalog.refresh = ordermill_core::HumanDuration::from_millis(50);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_created_or_repriced_on_one_node_is_sold_by_the_other() {
    let Some(engines) = Engines::scaled() else { return };
    engines.prepare().await;
    let (a, b) = (node(&engines).await, node(&engines).await);
    assert_eq!(a.put_product("crab", "19.99", 5).await.status, 201);
    // Read through at once, priced within the refresh interval.
    assert_eq!(b.product("crab").await["stock_available"], 5);
    let deadline = Instant::now() + Duration::from_secs(10);
    let placed = loop {
        let reply = b.order("c-1", &[("crab", 2)]).await;
        if reply.status == 201 {
            break reply;
        }
        assert_eq!(reply.code(), "unknown_sku", "{:?}", reply.body);
        assert!(Instant::now() < deadline, "node b never learned of the product");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(placed.body["total"], "39.98");
    assert_eq!(a.available("crab").await, 3, "one stock count for both nodes");

    // The confirmed view lands in the shared read cache, where every node reads it.
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    a.wait_for_status(&id, "confirmed").await;
    let support::Engines::ScaledOut(scaled) = &engines else { unreachable!("scaled engines") };
    let client = redis::Client::open(scaled.redis.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}:order:v1:{id}", scaled.name);
    let deadline = Instant::now() + Duration::from_secs(10);
    let cached: String = loop {
        let view: Option<String> =
            redis::cmd("GET").arg(&key).query_async(&mut redis).await.unwrap();
        if let Some(view) = view {
            break view;
        }
        assert!(Instant::now() < deadline, "the confirmed order never reached the shared cache");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(cached.contains(r#""status":"confirmed""#), "{cached}");
    assert_eq!(b.get(&format!("/api/orders/{id}")).await.body["status"], "confirmed");

    let body = json!({"name": "Crab", "price": "9.99", "stock": 5});
    a.send(a.client.put(a.url("/api/products/crab")).json(&body)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = b.order("c-2", &[("crab", 1)]).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        if reply.body["total"] == "9.99" {
            break;
        }
        assert!(Instant::now() < deadline, "node b kept the old price");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.stop().await;
    b.stop().await;
    engines.clean_up().await;
}
