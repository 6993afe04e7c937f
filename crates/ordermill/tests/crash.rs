//! The real binary, killed with SIGKILL mid-load (orders mid-pipeline) and restarted on the
//! same data dir: every order answered 201 is there, every order ends confirmed, each consumer
//! effect happened exactly once (one charge, one deduction, one notification per event), and
//! stock of record agrees with the orders (nothing oversold, nothing stranded).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashMap;
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Node;

fn start(dir: &Path) -> Node {
    Node::start(dir, &[])
}

fn url(node_addr: SocketAddr, path: &str) -> String {
    format!("http://{node_addr}{path}")
}

async fn put_product(client: &reqwest::Client, addr: SocketAddr, sku: &str, stock: i64) {
    let reply = client
        .put(url(addr, &format!("/api/products/{sku}")))
        .bearer_auth(support::MERCHANT_TOKEN)
        .json(&json!({"name": sku, "price": "1.00", "stock": stock}))
        .send()
        .await
        .unwrap();
    assert!(reply.status().is_success());
}

#[derive(Default)]
struct Accepted {
    ids: Vec<(String, String)>,
}

/// Runs `clients` loops placing orders until `stop`; records every 201's id and total.
fn load(
    addr: SocketAddr,
    clients: usize,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<Accepted>>, Vec<tokio::task::JoinHandle<()>>) {
    let accepted = Arc::new(Mutex::new(Accepted::default()));
    let tasks = (0..clients)
        .map(|c| {
            let accepted = accepted.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let items = match n % 3 {
                        0 => json!([{"sku": "hot", "quantity": 1 + n % 2}, {"sku": "cold", "quantity": 2}]),
                        1 => json!([{"sku": "hot", "quantity": 1 + n % 2}]),
                        _ => json!([{"sku": "cold", "quantity": 1}]),
                    };
                    let body = json!({"customer_id": format!("c-{c}"), "items": items});
                    let Ok(reply) = client.post(url(addr, "/api/orders")).json(&body).send().await else {
                        continue; // the server is gone: expected after the kill
                    };
                    if reply.status() == 201 {
                        let Ok(body) = reply.json::<Value>().await else { continue };
                        let id = body["order_id"].as_str().unwrap().to_owned();
                        let total = body["total"].as_str().unwrap().to_owned();
                        accepted.lock().unwrap().ids.push((id, total));
                    }
                }
            })
        })
        .collect();
    (accepted, tasks)
}

/// What the database file says, read directly.
struct Ledger {
    orders: i64,
    by_status: HashMap<String, i64>,
    /// Units of confirmed orders, per SKU.
    confirmed_units: HashMap<String, i64>,
    /// (stock, reserved) per SKU.
    products: HashMap<String, (i64, i64)>,
    payments: i64,
    processed: HashMap<String, i64>,
    outbox: i64,
}

fn count(db: &rusqlite::Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn ledger(dir: &Path) -> Ledger {
    let db = rusqlite::Connection::open(dir.join("ordermill.db")).unwrap();
    let mut by_status = HashMap::new();
    let mut confirmed_units = HashMap::new();
    let mut stmt = db.prepare("SELECT status, items FROM orders").unwrap();
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))).unwrap()
    {
        let (status, items) = row.unwrap();
        if status == "confirmed" {
            for line in serde_json::from_str::<Vec<Value>>(&items).unwrap() {
                *confirmed_units.entry(line["sku"].as_str().unwrap().to_owned()).or_insert(0) +=
                    line["quantity"].as_i64().unwrap();
            }
        }
        *by_status.entry(status).or_insert(0) += 1;
    }
    let mut products = HashMap::new();
    let mut stmt = db.prepare("SELECT sku, stock, reserved FROM products").unwrap();
    for row in stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
        .unwrap()
    {
        let (sku, stock, reserved) = row.unwrap();
        products.insert(sku, (stock, reserved));
    }
    let mut processed = HashMap::new();
    let mut stmt =
        db.prepare("SELECT consumer, count(*) FROM processed_events GROUP BY consumer").unwrap();
    for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))).unwrap() {
        let (consumer, n) = row.unwrap();
        processed.insert(consumer, n);
    }
    Ledger {
        orders: count(&db, "SELECT count(*) FROM orders"),
        by_status,
        confirmed_units,
        products,
        payments: count(&db, "SELECT count(*) FROM payments"),
        processed,
        outbox: count(&db, "SELECT count(*) FROM outbox"),
    }
}

/// Waits until every stored order is confirmed or cancelled and every event is delivered.
async fn settled(dir: &Path) -> Ledger {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ledger = ledger(dir);
        let open = ledger.by_status.get("accepted").copied().unwrap_or(0);
        if open == 0 && ledger.outbox == 0 {
            return ledger;
        }
        assert!(
            Instant::now() < deadline,
            "after 60 s, {open} orders still accepted and {} events in the outbox",
            ledger.outbox
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every order went through the pipeline exactly once: one charge, one deduction, one
/// notification per event, and stock of record agrees with the confirmed orders.
fn assert_exactly_once(ledger: &Ledger, initial: &[(&str, i64)]) {
    let confirmed = ledger.by_status.get("confirmed").copied().unwrap_or(0);
    assert_eq!(
        confirmed, ledger.orders,
        "every order confirmed (the simulated gateway accepts all): {:?}",
        ledger.by_status
    );
    assert_eq!(ledger.payments, ledger.orders, "one charge per order");
    assert_eq!(
        ledger.processed.get("payment").copied(),
        Some(ledger.orders),
        "payment processed each order.created once"
    );
    assert_eq!(
        ledger.processed.get("inventory").copied(),
        Some(ledger.orders),
        "inventory processed each order.created once"
    );
    assert_eq!(
        ledger.processed.get("notify").copied(),
        Some(2 * ledger.orders),
        "notify: created + confirmed per order"
    );
    for (sku, stock) in initial {
        let sold = ledger.confirmed_units.get(*sku).copied().unwrap_or(0);
        let (now, reserved) = ledger.products[*sku];
        assert_eq!(
            now,
            stock - sold,
            "{sku}: stock of record deducted exactly once per confirmed unit"
        );
        assert_eq!(reserved, 0, "{sku}: nothing left held");
        assert!(sold <= *stock, "{sku}: oversold");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_load_loses_no_accepted_order_and_keeps_stock_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(dir.path());
    let client = reqwest::Client::new();
    // Few enough hot units that the run also sells out: the kill lands on both paths.
    put_product(&client, node.addr, "hot", 200).await;
    put_product(&client, node.addr, "cold", 1_000_000).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (accepted, tasks) = load(node.addr, 32, stop.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted.lock().unwrap().ids.len() < 400 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    node.child.kill().unwrap(); // SIGKILL, with requests in flight
    node.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    let accepted = std::mem::take(&mut accepted.lock().unwrap().ids);
    assert!(accepted.len() >= 400, "load reached {} orders before the deadline", accepted.len());

    let node = start(dir.path());
    for (id, total) in &accepted {
        let reply = client.get(url(node.addr, &format!("/api/orders/{id}"))).send().await.unwrap();
        assert_eq!(reply.status(), 200, "order {id} was answered 201 but is gone after the crash");
        assert_eq!(reply.json::<Value>().await.unwrap()["total"], total.as_str());
    }
    let ledger = settled(dir.path()).await;
    assert!(ledger.orders >= accepted.len() as i64);
    assert_exactly_once(&ledger, &[("hot", 200), ("cold", 1_000_000)]);
    assert_eq!(ledger.confirmed_units["hot"], 200, "the hot SKU sold out exactly during the run");
    for sku in ["hot", "cold"] {
        let product: Value = client
            .get(url(node.addr, &format!("/api/products/{sku}")))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            product["stock_available"], product["stock"],
            "{sku}: hot stock reconciled with the store"
        );
    }
    drop(node);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = start(dir.path());
    let client = reqwest::Client::new();
    put_product(&client, node.addr, "hot", 1_000_000).await;
    put_product(&client, node.addr, "cold", 1_000_000).await;

    let stop = Arc::new(AtomicBool::new(false));
    let (accepted, tasks) = load(node.addr, 16, stop.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    while accepted.lock().unwrap().ids.len() < 200 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status =
        Command::new("kill").args(["-TERM", &node.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = node.child.wait().unwrap();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.unwrap();
    }
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    let accepted = accepted.lock().unwrap().ids.len() as i64;
    let stored = ledger(dir.path()).orders;
    assert!(stored >= accepted, "{stored} stored < {accepted} accepted");

    let node = start(dir.path());
    let ledger = settled(dir.path()).await;
    assert_exactly_once(&ledger, &[("hot", 1_000_000), ("cold", 1_000_000)]);
    drop(node);
}
