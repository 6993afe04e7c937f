//! `ordermill report create|status|download` against a running `ordermill serve`: asked for,
//! waited on and downloaded with `--wait`, read back with `status`, downloaded again with
//! `download`; the merchant token is required.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::{MERCHANT_TOKEN, Node};

fn report(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ordermill"))
        .arg("report")
        .args(args)
        .env_remove("ORDERMILL_MERCHANT_TOKEN")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_is_asked_for_waited_on_and_downloaded_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path(), &[]);
    let client = reqwest::Client::new();
    node.put_product(&client, "crab", json!({"name": "大闸蟹", "price": "19.99", "stock": 10}))
        .await;
    for customer in ["ann", "bo"] {
        node.order(&client, customer, "crab", 2).await;
    }
    let day = Duration::from_secs(86_400);
    let now = std::time::SystemTime::now();
    let (from, to) = (
        humantime::format_rfc3339(now - day).to_string(),
        humantime::format_rfc3339(now + day).to_string(),
    );
    let (from, to) = (from.as_str(), to.as_str());
    let base = node.url("");
    let out_dir = tempfile::tempdir().unwrap();
    let out_path = out_dir.path().to_str().unwrap();

    let (ok, _, err) =
        report(&["create", "--url", &base, "--kind", "orders", "--from", from, "--to", to]);
    assert!(!ok && err.contains("--token"), "the token is required: {err}");
    let (ok, _, err) = report(&[
        "create", "--url", &base, "--token", "wrong", "--kind", "orders", "--from", from, "--to",
        to,
    ]);
    assert!(!ok && err.contains("401 Unauthorized unauthorized"), "{err}");

    let auth = ["--url", base.as_str(), "--token", MERCHANT_TOKEN];
    let (ok, out, err) = report(
        &[
            &["create", "--kind", "orders", "--from", from, "--to", to, "--wait", out_path][..],
            &auth,
        ]
        .concat(),
    );
    assert!(ok, "{out}\n{err}");
    let id = out.split_whitespace().nth(1).unwrap().to_owned();
    assert!(out.contains(&format!("report {id} queued")), "{out}");
    let saved: Vec<_> =
        std::fs::read_dir(out_dir.path()).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    let name = saved[0].file_name().unwrap().to_str().unwrap().to_owned();
    assert!(name.starts_with("orders-") && name.ends_with(".csv"), "{name}");
    let text = std::fs::read_to_string(&saved[0]).unwrap();
    assert_eq!(text.lines().count(), 3, "a header and two orders: {text}");

    let (ok, out, err) = report(&[&["status", &id, "--json"][..], &auth].concat());
    assert!(ok, "{err}");
    let status: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((status["status"].as_str(), status["rows_done"].as_u64()), (Some("done"), Some(2)));

    std::fs::remove_file(&saved[0]).unwrap();
    let (ok, out, err) = report(&[&["download", &id, "--into", out_path][..], &auth].concat());
    assert!(ok && out.contains(&name), "{out}\n{err}");
    assert_eq!(std::fs::read_to_string(&saved[0]).unwrap(), text, "the same file again");

    let (ok, _, err) =
        report(&[&["status", "01900000-0000-7000-8000-000000000000"][..], &auth].concat());
    assert!(!ok && err.contains("report_not_found"), "{err}");
    node.stop();
}
