//! A worker is killed (SIGKILL) in the middle of a report and another takes over: the report
//! is not lost (the api node's sweeper puts it back in the queue once its run has been silent
//! for `reports.stale_after`), it starts over and completes once, and its file holds every order
//! of the range exactly once.
//!
//! Needs ORDERMILL_TEST_POSTGRES_URL, ORDERMILL_TEST_AMQP_URL and ORDERMILL_TEST_REDIS_URL;
//! skips with the reason otherwise.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::MERCHANT_TOKEN;
use support::scaled::{Deployment, Services, put_product};

const ORDERS: usize = 2000;

/// Reports read one order per page here, so a run lasts long enough to be killed in.
const SLOW_REPORTS: [(&str, &str); 3] = [
    ("ORDERMILL_REPORTS__PAGE_SIZE", "1"),
    ("ORDERMILL_REPORTS__STALE_AFTER", "2s"),
    ("ORDERMILL_REPORTS__SWEEP_INTERVAL", "200ms"),
];

async fn report(client: &reqwest::Client, base: &str, id: &str) -> Value {
    client
        .get(format!("{base}/api/reports/{id}"))
        .bearer_auth(MERCHANT_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_whose_worker_is_killed_starts_over_and_completes_once() {
    let Some(services) = Services::from_env() else { return };
    let deployment = Deployment::new(services);
    deployment.migrate();
    let api = deployment.api_with("api", &SLOW_REPORTS).await;
    let base = api.url("");
    assert!(put_product(&base, "rice", 1_000_000).await.is_success());
    let client = reqwest::Client::new();
    let from = chrono_free_now_ms() - 1000;
    let mut placed = HashSet::new();
    for chunk in 0..ORDERS / 500 {
        let orders: Vec<Value> = (0..500)
            .map(|i| json!({"customer_id": format!("c-{chunk}-{i}"), "items": [{"sku": "rice", "quantity": 1}]}))
            .collect();
        let reply: Value = client
            .post(format!("{base}/api/orders/batch"))
            .json(&json!({"orders": orders}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for result in reply["results"].as_array().unwrap() {
            assert_eq!(result["status"], 201, "{result}");
            placed.insert(result["order"]["order_id"].as_str().unwrap().to_owned());
        }
    }
    let to = chrono_free_now_ms() + 1000;

    let mut first = deployment.worker_with("worker-1", &SLOW_REPORTS);
    let asked: Value = client
        .post(format!("{base}/api/reports"))
        .bearer_auth(MERCHANT_TOKEN)
        .json(&json!({"kind": "orders", "from": from, "to": to}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = asked["report_id"].as_str().unwrap().to_owned();

    // Killed while it runs (claimed, reading its pages).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = report(&client, &base, &id).await;
        if status["status"] == "running" {
            break;
        }
        assert_ne!(status["status"], "done", "the report finished before the kill: make it slower");
        assert!(Instant::now() < deadline, "never running with progress: {status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.kill();
    let second = deployment.worker_with("worker-2", &SLOW_REPORTS);

    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let status = report(&client, &base, &id).await;
        match status["status"].as_str() {
            Some("done") => break status,
            Some("failed") => panic!("the report failed: {status}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "not done after the kill: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(done["rows_done"].as_u64(), Some(ORDERS as u64), "{done}");

    let file = client
        .get(format!("{base}/api/reports/{id}/download"))
        .bearer_auth(MERCHANT_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut csv = csv::Reader::from_reader(file.as_bytes());
    let ids: Vec<String> = csv.records().map(|r| r.unwrap()[0].to_owned()).collect();
    let distinct: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), distinct.len(), "no order twice in the file");
    assert_eq!(distinct, placed, "every order of the range, once");

    // The second worker ran it; the log says the sweeper sent it again.
    let api_log = std::fs::read_to_string(&api.log).unwrap();
    assert!(api_log.contains("Report waited without progress"), "the sweeper requeued it");
    drop(second);
}

fn chrono_free_now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis(),
    )
    .unwrap()
}
