//! `ordermill bench run --jwt-key` against `ordermill serve` in jwt mode: every order carries a
//! token the node accepts, for the customer its body names, each customer placing
//! `--orders-per-customer` orders with its one token; `--e2e` follows them with the admin token.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::{Value, json};
use support::Node;

const ADMIN_TOKEN: &str = "bench-jwt-admin-token";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../server/tests/fixtures").join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bench_run_in_jwt_mode_places_every_order_as_its_token_s_customer() {
    let dir = tempfile::tempdir().unwrap();
    let public = fixture("ed25519.pub");
    let node = Node::start(
        dir.path(),
        &[
            ("ORDERMILL_AUTH__CUSTOMER", "jwt"),
            ("ORDERMILL_AUTH__JWT__ALGORITHM", "EdDSA"),
            ("ORDERMILL_AUTH__JWT__PUBLIC_KEY_FILE", public.to_str().unwrap()),
            ("ORDERMILL_AUTH__JWT__ISSUER", "shop"),
            ("ORDERMILL_ADMIN_TOKEN", ADMIN_TOKEN),
        ],
    );
    let report = dir.path().join("report.json");
    let key = fixture("ed25519.key");
    let out = Command::new(env!("CARGO_BIN_EXE_ordermill"))
        .args(["bench", "run", "--target", &node.url(""), "--duration", "1s"])
        .args(["--connections", "2", "--setup", "--skus", "5", "--hot-skus", "1", "--quiet"])
        .args(["--jwt-key", key.to_str().unwrap(), "--jwt-algorithm", "EdDSA"])
        .args(["--jwt-issuer", "shop", "--orders-per-customer", "3", "--json"])
        .arg(&report)
        .args(["--e2e", "--e2e-sample", "20", "--admin-token", ADMIN_TOKEN])
        .env("ORDERMILL_MERCHANT_TOKEN", support::MERCHANT_TOKEN)
        .env_remove("ORDERMILL_AUTH__JWT__SECRET")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(
        (&report["run"]["customer_tokens"], &report["run"]["orders_per_customer"]),
        (&json!("EdDSA"), &json!(3))
    );
    let responses = &report["run"]["responses"];
    let created = responses["201"].as_u64().unwrap();
    assert!(created >= 3, "{responses}");
    // A token for another customer than the body's would be 403, a bad one 401.
    assert_eq!((responses["4xx"].as_u64(), responses["5xx"].as_u64()), (Some(0), Some(0)));
    // --e2e read the sampled orders back with the admin token, as jwt mode allows.
    let e2e = &report["e2e"];
    assert_eq!(e2e["sampled"], 20, "{e2e}");
    assert_eq!((e2e["confirmed"].as_u64(), e2e["unreadable"].as_u64()), (Some(20), Some(0)));

    let client = reqwest::Client::new();
    let mine = node.url("/api/customers/me/orders?customer_id=bench-0-0&limit=20");
    let listed = support::get_json(&client, mine, ADMIN_TOKEN).await;
    let orders = listed["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 3, "connection 0's first customer placed three: {listed}");
    assert!(orders.iter().all(|o| o["customer_id"] == "bench-0-0"), "{listed}");

    // The same run without a token is what a node in jwt mode refuses.
    let refused = Command::new(env!("CARGO_BIN_EXE_ordermill"))
        .args(["bench", "run", "--target", &node.url(""), "--duration", "300ms"])
        .args(["--connections", "1", "--skus", "5", "--hot-skus", "1", "--quiet", "--json"])
        .arg(dir.path().join("refused.json"))
        .env_remove("ORDERMILL_AUTH__JWT__SECRET")
        .output()
        .unwrap();
    assert!(refused.status.success(), "{}", String::from_utf8_lossy(&refused.stderr));
    let refused: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("refused.json")).unwrap()).unwrap();
    assert_eq!(refused["run"]["responses"]["201"], 0, "{refused}");
    node.stop();
}
