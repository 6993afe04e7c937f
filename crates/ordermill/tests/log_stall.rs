//! A stdout nobody reads (a stalled log shipper, a paused terminal, a full pipe) never stops
//! intake: log lines wait in the log writer's queue — dropped and counted only past its
//! limit — and come out once the reader drains again.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Node;

/// Each order logs two notifications (~250 bytes each in JSON): 800 orders are several times
/// what a pipe buffers (64 KiB), which a log written by the request threads stalled within
/// ~170 orders.
const ORDERS: usize = 800;
const CLIENTS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_taken_while_nobody_reads_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (node, mut log) = Node::start_unread(dir.path(), &[]);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let created = node
        .put_product(&client, "a", json!({"name": "A", "price": "1.00", "stock": 100_000}))
        .await;
    assert!(created.status().is_success(), "{}", created.status());

    let mut clients = tokio::task::JoinSet::new();
    for c in 0..CLIENTS {
        let (client, url) = (client.clone(), node.url("/api/orders"));
        clients.spawn(async move {
            for i in 0..ORDERS / CLIENTS {
                let order = json!({"customer_id": format!("c-{c}-{i}"), "items": [{"sku": "a", "quantity": 1}]});
                let reply = client.post(&url).json(&order).send().await;
                let status = reply.map(|r| r.status().as_u16()).map_err(|e| e.to_string());
                assert_eq!(status, Ok(201), "order {i} of client {c}, log unread");
            }
        });
    }
    while let Some(done) = clients.join_next().await {
        done.unwrap();
    }

    // Every order also went through the consumers, whose notifications are log lines.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let metrics = client.get(node.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let confirmed = format!("ordermill_orders_confirmed_total {ORDERS}");
        if metrics.lines().any(|l| l == confirmed) {
            assert!(
                metrics.lines().any(|l| l.starts_with("ordermill_log_lines_dropped_total ")),
                "the dropped-lines counter is exported"
            );
            break;
        }
        assert!(Instant::now() < deadline, "not all {ORDERS} orders confirmed within 30 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Read again: the queued lines come out, the last order's notification among them.
    let last = format!("c-{}-{}", CLIENTS - 1, ORDERS / CLIENTS - 1);
    let found = tokio::task::spawn_blocking(move || {
        log.any(|line| {
            let Ok(line) = line else { return false };
            serde_json::from_str::<Value>(&line).is_ok_and(|l| {
                l["message"] == "Customer notified." && l["customer_id"] == last.as_str()
            })
        })
    });
    let found = tokio::time::timeout(Duration::from_secs(30), found).await;
    assert!(matches!(found, Ok(Ok(true))), "the last order's notification was logged: {found:?}");
    node.stop();
}
