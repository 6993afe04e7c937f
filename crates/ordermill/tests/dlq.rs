//! `ordermill dlq` on a stopped node: a payment that dead-lettered while the node ran is
//! listed, replayed (and delivered again on the next start), and purged.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Node;

/// One attempt per message, so the gateway's first failure dead-letters it.
fn start(dir: &Path) -> Node {
    Node::start(
        dir,
        &[("ORDERMILL_WORKERS__MAX_ATTEMPTS", "1"), ("ORDERMILL_ADMIN_TOKEN", "t0ken")],
    )
}

fn dlq(dir: &Path, action: &str) -> String {
    dlq_with(dir, action, &[])
}

fn dlq_with(dir: &Path, action: &str, more: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ordermill"))
        .args(["dlq", action, "--queue", "payment", "--data-dir"])
        .arg(dir)
        .args(more)
        .output()
        .unwrap();
    assert!(out.status.success(), "dlq {action} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

async fn dead_count(client: &reqwest::Client, node: &Node) -> i64 {
    let reply = support::get_json(client, node.url("/admin/dlq/payment"), "t0ken").await;
    reply["count"].as_i64().unwrap()
}

async fn wait_dead(client: &reqwest::Client, node: &Node, want: i64) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while dead_count(client, node).await != want {
        assert!(Instant::now() < deadline, "payment dead letters never reached {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_and_purged_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let client = reqwest::Client::new();
    let node = start(dir.path());
    let base = format!("http://{}", node.addr);
    client
        .put(format!("{base}/api/products/a"))
        .bearer_auth(support::MERCHANT_TOKEN)
        .json(&json!({"name": "A", "price": "1.00", "stock": 5}))
        .send()
        .await
        .unwrap();
    let order: Value = client
        .post(format!("{base}/api/orders"))
        .json(&json!({"customer_id": "test-down", "items": [{"sku": "a", "quantity": 1}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    wait_dead(&client, &node, 1).await;
    node.stop();

    let listed = dlq(dir.path(), "list");
    assert!(listed.starts_with("1 dead letter(s) in payment"), "{listed}");
    assert!(listed.contains("order.created") && listed.contains("test-down"), "{listed}");
    assert!(listed.contains(&format!("order={order_id}")), "each names its order: {listed}");
    let further = dlq_with(dir.path(), "list", &["--offset", "1"]);
    assert!(further.starts_with("1 dead letter(s) in payment; none from number 2"), "{further}");
    assert!(!further.contains("test-down"), "a page past the end lists none: {further}");
    assert!(dlq(dir.path(), "replay").contains("replayed 1"));
    assert!(dlq(dir.path(), "list").starts_with("0 dead letter(s)"));

    // The replayed message is delivered on the next start (and fails again: still test-down).
    let node = start(dir.path());
    wait_dead(&client, &node, 1).await;
    let status: Value = client
        .get(format!("http://{}/api/orders/{order_id}", node.addr))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "accepted", "never charged, never cancelled");
    node.stop();

    // One by its event id (the first column of `list`); a wrong id says so and fails.
    let listed = dlq(dir.path(), "list");
    let event = listed.lines().nth(1).and_then(|l| l.split_whitespace().next()).unwrap().to_owned();
    let wrong = Command::new(env!("CARGO_BIN_EXE_ordermill"))
        .args([
            "dlq",
            "purge",
            "--queue",
            "payment",
            "--event-id",
            &uuid::Uuid::now_v7().to_string(),
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("no dead letter of event"));
    assert!(dlq_with(dir.path(), "purge", &["--event-id", &event]).contains("purged 1"));
    assert!(dlq(dir.path(), "list").starts_with("0 dead letter(s)"));
    assert!(dlq(dir.path(), "purge").contains("purged 0"));
    let bad = Command::new(env!("CARGO_BIN_EXE_ordermill"))
        .args(["dlq", "list", "--queue", "nope", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no queue named \"nope\""));
}
