//! `ordermill status` against a running `ordermill serve`: what it reports matches what the
//! node did, a node that does not answer shows as not ready (exit 1), and no node at all is an
//! error that names the URLs.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Node;

fn status(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ordermill"))
        .arg("status")
        .args(args)
        .env_remove("ORDERMILL_ADMIN_TOKEN")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_readiness_orders_and_queues_of_the_nodes_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[("ORDERMILL_ADMIN_TOKEN", "s3cret")]);
    let client = reqwest::Client::new();
    node.put_product(&client, "a", json!({"name": "A", "price": "1.00", "stock": 10})).await;
    for customer in ["c-1", "c-2", "c-3"] {
        node.order(&client, customer, "a", 1).await;
    }
    // Confirmation is asynchronous: wait until the node counts all three.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let metrics = client.get(node.url("/metrics")).send().await.unwrap().text().await.unwrap();
        if metrics.lines().any(|l| l == "ordermill_orders_confirmed_total 3") {
            break;
        }
        assert!(Instant::now() < deadline, "not confirmed within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let base = node.url("");
    let out = status(&["--url", &base, "--json", "--every", "200ms", "--admin-token", "s3cret"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["nodes"][0]["ready"], true, "{report}");
    assert_eq!(report["totals"]["accepted"], 3.0, "{report}");
    assert_eq!(report["totals"]["confirmed"], 3.0, "{report}");
    assert!(report["accept_to_confirm_p99_s"].as_f64().is_some(), "{report}");
    let queues: Vec<&str> =
        report["queues"].as_array().unwrap().iter().map(|q| q["queue"].as_str().unwrap()).collect();
    assert_eq!(queues, ["inventory", "notify", "payment", "reports"], "{report}");
    assert!(report["queues"][0]["in_flight"].is_number(), "the admin token adds in-flight counts");

    // A node that does not answer: reported, and the exit status says not all are ready.
    let gone = "http://127.0.0.1:9"; // discard: nothing listens
    let out = status(&["--url", &base, "--url", gone, "--every", "100ms"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("nodes ready   1 of 2") && text.contains("NOT READY"), "{text}");
    assert!(text.contains("accepted 3"), "{text}");

    let out = status(&["--url", gone]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("no node answered /metrics at http://127.0.0.1:9")
    );
    node.stop();
}

/// Where the time went over the interval: the stages that ran while status watched (orders
/// placed meanwhile), per second and their mean, and none when nothing ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_the_stages_that_ran_during_its_interval() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let client = reqwest::Client::new();
    node.put_product(&client, "a", json!({"name": "A", "price": "1.00", "stock": 100000})).await;
    let base = node.url("");

    let idle = status(&["--url", &base, "--json", "--every", "200ms"]);
    let idle: Value = serde_json::from_slice(&idle.stdout).unwrap();
    assert_eq!(idle["stages"], json!([]), "nothing ran: {idle}");

    let watching = {
        let base = base.clone();
        tokio::task::spawn_blocking(move || status(&["--url", &base, "--json", "--every", "1s"]))
    };
    let until = Instant::now() + Duration::from_millis(1500);
    let mut placed = 0;
    while Instant::now() < until {
        node.order(&client, &format!("c-{placed}"), "a", 1).await;
        placed += 1;
    }
    let out = watching.await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let stage = |queue: &str, name: &str| {
        report["stages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["queue"] == queue && s["stage"] == name)
            .cloned()
    };
    let reserve = stage("", "reserve").unwrap_or_else(|| panic!("no reserve: {report}"));
    let per_sec = reserve["per_sec"].as_f64().unwrap();
    // One reservation per order; the interval is about a second of the 1.5 s of orders.
    assert!(per_sec >= 1.0 && per_sec <= f64::from(placed) * 1.5, "{reserve} of {placed}");
    assert!(reserve["mean_ms"].as_f64().unwrap() > 0.0, "{reserve}");
    assert!(stage("", "commit").is_some(), "{report}");
    node.stop();
}
