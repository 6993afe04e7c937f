//! A worker is killed (SIGKILL) while charges are in flight at the payment gateway and
//! notifications at the webhook, and another takes over. Gateway and webhook receiver here are
//! this test's own HTTP server: each answers after 100 ms and counts every call with the
//! `Idempotency-Key` it carried, because a duplicate shows there and nowhere else (a row count
//! behind a primary key cannot show one). Afterwards every order answered 201 is confirmed, was
//! charged under exactly one key (its own id) and notified of each of its events under exactly
//! one key (the event's id); a call repeated after the kill carries that same key, so a real
//! receiver acts once; every other effect happened once.
//!
//! Needs ORDERMILL_TEST_POSTGRES_URL, ORDERMILL_TEST_AMQP_URL and ORDERMILL_TEST_REDIS_URL;
//! skips with the reason otherwise.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use serde_json::Value;
use support::scaled::{Deployment, Load, Services, await_confirmed, put_product};

const SKU: &str = "tangyuan";
const STOCK: i64 = 100_000;

/// What the gateway saw: calls per idempotency key, the order id each call's body named, and
/// how many calls are being answered right now.
#[derive(Default)]
struct Ledger {
    calls: Mutex<HashMap<String, usize>>,
    mismatched: Mutex<Vec<(String, String)>>,
    in_flight: AtomicUsize,
}

/// What the webhook receiver saw: calls per idempotency key, the keys each (order, event kind)
/// came under, calls whose key is not their body's `event_id`, and calls being answered now.
#[derive(Default)]
struct Inbox {
    calls: Mutex<HashMap<String, usize>>,
    keys: Mutex<HashMap<(String, String), HashSet<String>>>,
    mismatched: Mutex<Vec<(String, String)>>,
    in_flight: AtomicUsize,
}

async fn notified(
    State(inbox): State<Arc<Inbox>>,
    headers: HeaderMap,
    body: String,
) -> &'static str {
    inbox.in_flight.fetch_add(1, Ordering::SeqCst);
    let key =
        headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("<none>").to_owned();
    let body = serde_json::from_str::<Value>(&body).unwrap_or_default();
    let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
    if key != field("event_id") {
        inbox.mismatched.lock().unwrap().push((key.clone(), field("event_id")));
    }
    inbox
        .keys
        .lock()
        .unwrap()
        .entry((field("order_id"), field("kind")))
        .or_default()
        .insert(key.clone());
    *inbox.calls.lock().unwrap().entry(key).or_default() += 1;
    tokio::time::sleep(Duration::from_millis(100)).await;
    inbox.in_flight.fetch_sub(1, Ordering::SeqCst);
    "noted"
}

async fn charge(
    State(ledger): State<Arc<Ledger>>,
    headers: HeaderMap,
    body: String,
) -> &'static str {
    ledger.in_flight.fetch_add(1, Ordering::SeqCst);
    let key =
        headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("<none>").to_owned();
    let order = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|b| b["order_id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    if key != order {
        ledger.mismatched.lock().unwrap().push((key.clone(), order));
    }
    *ledger.calls.lock().unwrap().entry(key).or_default() += 1;
    tokio::time::sleep(Duration::from_millis(100)).await;
    ledger.in_flight.fetch_sub(1, Ordering::SeqCst);
    "charged"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_payment_charges_and_notifies_each_order_under_one_key() {
    let Some(services) = Services::from_env() else { return };
    let ledger = Arc::new(Ledger::default());
    let inbox = Arc::new(Inbox::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let outside = listener.local_addr().unwrap();
    let (gateway, webhook) = (format!("http://{outside}/charge"), format!("http://{outside}/hook"));
    let app = axum::Router::new()
        .route("/charge", post(charge))
        .with_state(ledger.clone())
        .merge(axum::Router::new().route("/hook", post(notified)).with_state(inbox.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let env = [
        ("ORDERMILL_PAYMENT__GATEWAY", "http"),
        ("ORDERMILL_PAYMENT__URL", gateway.as_str()),
        ("ORDERMILL_NOTIFY__NOTIFIER", "webhook"),
        ("ORDERMILL_NOTIFY__URL", webhook.as_str()),
    ];

    let deployment = Deployment::new(services);
    deployment.migrate();
    let api = deployment.api("api").await;
    let mut first = deployment.worker_with("worker-1", &env);
    let base = api.url("");
    assert!(put_product(&base, SKU, STOCK).await.is_success());

    let load = Load::start(&base, 4, SKU, &deployment.id);
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    tokio::time::sleep(Duration::from_millis(500 + rng.u64(0..1_500))).await;
    // Killed only while the gateway and the webhook are both answering some of its calls.
    let deadline = Instant::now() + Duration::from_secs(10);
    while ledger.in_flight.load(Ordering::SeqCst) == 0
        || inbox.in_flight.load(Ordering::SeqCst) == 0
    {
        assert!(
            Instant::now() < deadline,
            "no charge and notification in flight together within 10 s (seed {seed})"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let in_flight = ledger.in_flight.load(Ordering::SeqCst);
    let notifying = inbox.in_flight.load(Ordering::SeqCst);
    first.kill();
    let mut second = deployment.worker_with("worker-2", &env);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let report = load.stop().await;
    let unexpected: Vec<_> = report.statuses.keys().filter(|s| **s != 201).collect();
    assert!(unexpected.is_empty(), "unexpected answers {unexpected:?}: {:?}", report.samples);

    let not_confirmed = await_confirmed(&base, &report.accepted, Duration::from_secs(60)).await;
    assert!(
        not_confirmed.is_empty(),
        "{} of {} orders are not confirmed 60 s after the load (seed {seed}); e.g. {:?}",
        not_confirmed.len(),
        report.accepted.len(),
        &not_confirmed[..not_confirmed.len().min(5)]
    );
    let settled = deployment.settled(Duration::from_secs(30)).await;
    settled.assert_exactly_once(&[(SKU, STOCK)], 0);
    assert_eq!(deployment.dead_letters(), 0);

    let calls = ledger.calls.lock().unwrap().clone();
    let mismatched = ledger.mismatched.lock().unwrap().clone();
    assert!(mismatched.is_empty(), "charges whose key is not their order's id: {mismatched:?}");
    let accepted: HashSet<&String> = report.accepted.iter().collect();
    for id in &accepted {
        assert!(calls.contains_key(*id), "order {id} was never charged (seed {seed})");
    }
    let strangers: Vec<&String> = calls.keys().filter(|k| !accepted.contains(k)).collect();
    assert!(
        strangers.iter().all(|k| settled.confirmed_ids.contains(*k)),
        "charged keys that are no confirmed order: {strangers:?}"
    );
    let repeated = calls.values().filter(|n| **n > 1).count();

    // Both notifications of every order, each under one key: its event's id.
    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = loop {
        let keys = inbox.keys.lock().unwrap().clone();
        let missing: Vec<(String, &str)> = accepted
            .iter()
            .flat_map(|id| ["order.created", "order.confirmed"].map(|kind| ((*id).clone(), kind)))
            .filter(|(id, kind)| !keys.contains_key(&(id.clone(), (*kind).to_owned())))
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        missing.is_empty(),
        "{} notifications never reached the webhook (seed {seed}); e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let mismatched = inbox.mismatched.lock().unwrap().clone();
    assert!(
        mismatched.is_empty(),
        "notifications whose key is not their event's id: {mismatched:?}"
    );
    let keys = inbox.keys.lock().unwrap().clone();
    let split: Vec<_> = keys.iter().filter(|(_, k)| k.len() != 1).collect();
    assert!(split.is_empty(), "one event notified under several keys (seed {seed}): {split:?}");
    let strangers: Vec<_> =
        keys.keys().filter(|(id, _)| !settled.confirmed_ids.contains(id)).collect();
    assert!(strangers.is_empty(), "notified orders that are not confirmed: {strangers:?}");
    let notes = inbox.calls.lock().unwrap().clone();
    let renotified = notes.values().filter(|n| **n > 1).count();
    eprintln!(
        "seed {seed}: {} orders, {in_flight} charges and {notifying} notifications in flight at \
         the kill; {repeated} charged and {renotified} notified again after it under the same \
         key; {} charges and {} notifications in all",
        accepted.len(),
        calls.values().sum::<usize>(),
        notes.values().sum::<usize>()
    );
    assert!(second.running(), "the second worker carried on");
}
