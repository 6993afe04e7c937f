//! `ordermill orders list|cancel` against a running `ordermill serve` (pay later, so orders
//! wait): the waiting order is listed, cancelled once, refused when it cannot be, and the
//! admin token is required.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Node;

fn orders(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ordermill"))
        .arg("orders")
        .args(args)
        .env_remove("ORDERMILL_ADMIN_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_order_is_listed_and_cancelled_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(
        dir.path(),
        &[
            ("ORDERMILL_ADMIN_TOKEN", "s3cret"),
            ("ORDERMILL_PAYMENT__MODE", "await_callback"),
            ("ORDERMILL_PAYMENT__CALLBACK_SECRET", "cb"),
        ],
    );
    let client = reqwest::Client::new();
    node.put_product(&client, "a", json!({"name": "A", "price": "1.00", "stock": 10})).await;
    let id = node.order(&client, "c-1", "a", 4).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let order: Value = client
            .get(node.url(&format!("/api/orders/{id}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if order["status"] == "awaiting_payment" {
            break;
        }
        assert!(Instant::now() < deadline, "never awaiting payment: {order}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let base = node.url("");
    let auth = ["--url", base.as_str(), "--admin-token", "s3cret"];
    let (ok, out, err) = orders(&[&["list", "--status", "awaiting_payment"][..], &auth].concat());
    assert!(ok, "{err}");
    assert!(out.contains(&id) && out.contains("awaiting_payment") && out.contains("4.00"), "{out}");
    let (ok, out, err) = orders(&[&["list", "--status", "accepted", "--json"][..], &auth].concat());
    assert!(ok, "{err}");
    let page: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(page["orders"], json!([]), "{out}");

    let (ok, out, err) =
        orders(&[&["cancel", id.as_str(), "--reason", "test"][..], &auth].concat());
    assert!(ok, "{err}");
    assert!(out.contains("cancelled; its stock goes back on sale"), "{out}");
    let (ok, out, _) = orders(&[&["cancel", id.as_str()][..], &auth].concat());
    assert!(ok && out.contains("was already cancelled"), "{out}");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let product: Value =
            client.get(node.url("/api/products/a")).send().await.unwrap().json().await.unwrap();
        if product["stock_available"] == 10 {
            break;
        }
        assert!(Instant::now() < deadline, "units never came back: {product}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let (ok, _, err) = orders(&[
        "cancel",
        "01900000-0000-7000-8000-000000000000",
        "--url",
        &base,
        "--admin-token",
        "s3cret",
    ]);
    assert!(!ok && err.contains("order_not_found"), "{err}");
    let (ok, _, err) = orders(&["list", "--url", &base, "--admin-token", "wrong"]);
    assert!(!ok && err.contains("unauthorized"), "{err}");
    let (ok, _, err) = orders(&["list", "--url", &base]);
    assert!(!ok && err.contains("--admin-token"), "the token is required: {err}");
}
