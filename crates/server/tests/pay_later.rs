//! Pay-later orders (`payment.mode = "await_callback"`) on the real app: paid within the
//! deadline → confirmed and charged once; never paid → cancelled at the deadline (fake clock)
//! with its stock back; a deadline passing while the node is down fires once; a late payment
//! leaves the order cancelled and owed back; the same callback twice is one payment; forged,
//! stale and mismatched callbacks are refused; 100 buyers of 10 units who never pay give all
//! 10 back.
//!
//! Every scenario runs twice: on the embedded engines (`<name>::embedded`) and on the real
//! PostgreSQL, RabbitMQ and Redis (`<name>::scaled_out`).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[macro_use]
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use ordermill_core::{Clock, HumanDuration, ManualClock, SystemClock};
use ordermill_server::adapters::integrations::signature;
use ordermill_server::startup::settings::{NotifierKind, PaymentMode, Secret, SecretUrl};
use serde_json::{Value, json};
use support::{Engines, Reply, TestApp, eventually, spawn_app_on};

on_both_engines!(
    a_paid_order_is_confirmed_and_charged_once_and_a_failed_one_cancelled,
    an_unpaid_order_is_cancelled_at_its_deadline_and_late_money_is_owed_back,
    a_deadline_passing_while_the_node_is_down_fires_once,
    forged_stale_and_mismatched_callbacks_are_refused,
    a_hundred_buyers_of_ten_units_who_never_pay_give_all_ten_back,
);

const SECRET: &str = "cb-secret-for-tests";
const ADMIN: &str = "pay-later-admin";
const PAY_WITHIN: Duration = Duration::from_secs(15 * 60);

/// Event bodies the notifier posted, as a webhook receiver sees them.
type Received = Arc<Mutex<Vec<Value>>>;

async fn webhook_receiver() -> (String, Received) {
    let received: Received = Arc::default();
    let hook = {
        let received = received.clone();
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |raw: String| {
                let received = received.clone();
                async move {
                    received.lock().unwrap().push(serde_json::from_str(&raw).unwrap());
                    StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hook).await });
    (format!("http://{addr}/hook"), received)
}

async fn app_in(
    engines: &Engines,
    dir: tempfile::TempDir,
    clock: Arc<ManualClock>,
    hook: Option<&str>,
) -> TestApp {
    spawn_app_on(engines.clone(), dir, clock, |s| {
        s.payment.mode = PaymentMode::AwaitCallback;
        s.payment.callback_secret = Some(Secret::new(SECRET));
        s.payment.pay_within = HumanDuration::from_secs(PAY_WITHIN.as_secs());
        s.payment.check_interval = HumanDuration::from_millis(20);
        s.admin_token = Some(Secret::new(ADMIN));
        s.workers.retry_base = HumanDuration::from_millis(10);
        s.workers.retry_max = HumanDuration::from_millis(50);
        if let Some(hook) = hook {
            s.notify.notifier = NotifierKind::Webhook;
            s.notify.url = Some(SecretUrl::new(hook));
        }
    })
    .await
}

async fn app_on(engines: &Engines, clock: Arc<ManualClock>) -> TestApp {
    app_in(engines, tempfile::tempdir().unwrap(), clock, None).await
}

fn now_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(SystemClock.now()))
}

/// Posts `body` to the callback endpoint signed with `secret` at the clock's time + `skew`.
async fn callback_signed(
    app: &TestApp,
    clock: &ManualClock,
    body: &Value,
    secret: &str,
    skew_secs: i64,
) -> Reply {
    let raw = serde_json::to_vec(body).unwrap();
    let t = clock.now().0 / 1000 + skew_secs;
    let request = app
        .client
        .post(app.url("/api/payments/callback"))
        .header(signature::HEADER, signature::sign(secret.as_bytes(), t, &raw))
        .header("content-type", "application/json")
        .body(raw);
    app.send(request).await
}

async fn callback(app: &TestApp, clock: &ManualClock, body: &Value) -> Reply {
    callback_signed(app, clock, body, SECRET, 0).await
}

fn paid(order: &Value, payment_id: &str) -> Value {
    json!({
        "order_id": order["order_id"],
        "payment_id": payment_id,
        "status": "paid",
        "amount": order["total"],
    })
}

/// A counter's value in a `/metrics` page (0 when it is not there yet).
fn metric(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn statuses(order: &Value) -> Vec<&str> {
    order["history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect()
}

fn id(reply: &Reply) -> String {
    reply.body["order_id"].as_str().unwrap().to_owned()
}

/// Places an order and waits until payment has given it its URL and deadline.
async fn awaiting(app: &TestApp, customer: &str, items: &[(&str, i64)]) -> Value {
    let placed = app.order(customer, items).await;
    assert_eq!(placed.status, 201, "{:?}", placed.body);
    assert_eq!(placed.body["status"], "accepted");
    app.wait_for_status(&id(&placed), "awaiting_payment").await
}

async fn a_paid_order_is_confirmed_and_charged_once_and_a_failed_one_cancelled(engines: Engines) {
    let clock = now_clock();
    let app = app_on(&engines, clock.clone()).await;
    app.put_product("crab", "19.99", 10).await;
    let order = awaiting(&app, "ann", &[("crab", 2)]).await;
    let order_id = order["order_id"].as_str().unwrap();
    assert_eq!(
        order["payment_url"],
        format!("https://pay.example/checkout/{order_id}"),
        "the simulated gateway's page"
    );
    let deadline = ordermill_core::UnixMillis(clock.now().0 + PAY_WITHIN.as_millis() as i64);
    assert_eq!(order["pay_by"], serde_json::to_value(deadline).unwrap());

    let first = callback(&app, &clock, &paid(&order, "pay-1")).await;
    assert_eq!(first.status, 200, "{:?}", first.body);
    assert_eq!(first.body["outcome"], "paid");
    let confirmed = app.wait_for_status(order_id, "confirmed").await;
    assert_eq!(statuses(&confirmed), ["accepted", "awaiting_payment", "confirmed"]);
    let again = callback(&app, &clock, &paid(&order, "pay-1")).await;
    assert_eq!((again.status, &again.body["outcome"]), (200, &json!("repeat")));
    assert_eq!((again.body["status"].as_str()), Some("confirmed"));
    assert_eq!(app.count_rows("SELECT count(*) FROM payments WHERE status = 'succeeded'").await, 1);
    eventually("stock of record deducted", || async { app.product("crab").await["stock"] == 8 })
        .await;

    // The provider says the payment failed: cancelled, stock back on sale.
    let other = awaiting(&app, "bob", &[("crab", 3)]).await;
    assert_eq!(app.available("crab").await, 5);
    let failed = json!({
        "order_id": other["order_id"], "payment_id": "pay-2", "status": "failed",
        "amount": other["total"],
    });
    let reply = callback(&app, &clock, &failed).await;
    assert_eq!((reply.status, &reply.body["outcome"]), (200, &json!("failed")), "{:?}", reply.body);
    app.wait_for_status(other["order_id"].as_str().unwrap(), "cancelled").await;
    eventually("units back", || async { app.available("crab").await == 8 }).await;
    // Nothing deadline-related is left to fire for either order.
    clock.advance(PAY_WITHIN + Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.get(&format!("/api/orders/{order_id}")).await.body["status"], "confirmed");
    assert_eq!(
        app.count_rows("SELECT count(*) FROM processed_events WHERE consumer = 'payment_timeout'")
            .await,
        0
    );
    app.stop().await;
}

async fn an_unpaid_order_is_cancelled_at_its_deadline_and_late_money_is_owed_back(
    engines: Engines,
) {
    let clock = now_clock();
    let (hook, received) = webhook_receiver().await;
    let app = app_in(&engines, tempfile::tempdir().unwrap(), clock.clone(), Some(&hook)).await;
    let limited = json!({"name": "Cake", "price": "8.80", "stock": 5, "per_customer_limit": 2});
    let put = app.send(app.client.put(app.url("/api/products/cake")).json(&limited)).await;
    assert_eq!(put.status, 201, "{:?}", put.body);
    let order = awaiting(&app, "ann", &[("cake", 2)]).await;
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    eventually("stock deducted", || async { app.product("cake").await["stock"] == 3 }).await;

    clock.advance(PAY_WITHIN - Duration::from_secs(1));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        app.get(&format!("/api/orders/{order_id}")).await.body["status"],
        "awaiting_payment"
    );
    clock.advance(Duration::from_secs(2));
    let cancelled = app.wait_for_status(&order_id, "cancelled").await;
    assert_eq!(statuses(&cancelled), ["accepted", "awaiting_payment", "cancelled"]);
    eventually("stock back in store and cache", || async {
        let p = app.product("cake").await;
        p["stock"] == 5 && p["stock_available"] == 5
    })
    .await;
    let within_limit = app.order("ann", &[("cake", 2)]).await;
    assert_eq!(
        within_limit.status, 201,
        "the cancelled order's units count no more: {:?}",
        within_limit.body
    );
    app.wait_for_status(&id(&within_limit), "awaiting_payment").await;
    eventually("the cancellation is announced with its reason", || async {
        received.lock().unwrap().iter().any(|e| {
            e["kind"] == "order.cancelled"
                && e["order_id"] == order_id.as_str()
                && e["reason"] == "payment_timeout"
        })
    })
    .await;

    let refunds_before =
        metric(&app.get_text("/metrics").await, "ordermill_payments_refund_required_total");
    // The money arrives after all: answered 200, the order stays cancelled, owed back.
    let late = callback(&app, &clock, &paid(&order, "pay-late")).await;
    assert_eq!(late.status, 200, "{:?}", late.body);
    assert_eq!(
        (late.body["outcome"].as_str(), late.body["status"].as_str()),
        (Some("refund_required"), Some("cancelled"))
    );
    let again = callback(&app, &clock, &paid(&order, "pay-late")).await;
    assert_eq!((again.status, again.body["outcome"].as_str()), (200, Some("repeat")));
    let shown = app.get(&format!("/api/orders/{order_id}")).await.body;
    assert_eq!(shown["status"], "cancelled");
    let notes: Vec<&Value> = shown["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| &h["note"])
        .filter(|n| !n.is_null())
        .collect();
    assert_eq!(notes, [&json!("refund_required")]);
    assert_eq!(
        app.count_rows("SELECT count(*) FROM payments WHERE status = 'refund_required'").await,
        1
    );
    assert_eq!(app.available("cake").await, 3, "the late money takes no units back off sale");
    eventually("payment.refund_required reaches the notifier", || async {
        received
            .lock()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "payment.refund_required" && e["order_id"] == order_id.as_str())
    })
    .await;
    let owed = app
        .send(
            app.client
                .get(app.url("/admin/orders?status=refund_required"))
                .header("authorization", format!("Bearer {ADMIN}")),
        )
        .await;
    let owed: Vec<&str> = owed.body["orders"]
        .as_array()
        .unwrap_or_else(|| panic!("{:?}", owed.body))
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(owed, [order_id.as_str()], "operators find the money to give back");
    // The metrics are process-wide and tests share the process: compare, don't pin.
    let metrics = app.get_text("/metrics").await;
    assert!(metric(&metrics, "ordermill_payments_refund_required_total") >= refunds_before + 1.0);
    assert!(metric(&metrics, "ordermill_payment_timeouts_total") >= 1.0, "{metrics}");
    app.stop().await;
}

async fn a_deadline_passing_while_the_node_is_down_fires_once(engines: Engines) {
    let clock = now_clock();
    let app = app_on(&engines, clock.clone()).await;
    app.put_product("tea", "3.00", 5).await;
    let order = awaiting(&app, "ann", &[("tea", 1)]).await;
    let order_id = order["order_id"].as_str().unwrap().to_owned();
    let dir = app.stop().await;

    clock.advance(PAY_WITHIN + Duration::from_secs(60));
    let app = app_in(&engines, dir, clock.clone(), None).await;
    app.wait_for_status(&order_id, "cancelled").await;
    eventually("units back", || async { app.available("tea").await == 5 }).await;
    let dir = app.stop().await;

    let app = app_in(&engines, dir, clock, None).await;
    let settled = "SELECT count(*) FROM processed_events WHERE consumer = 'inventory'";
    eventually("inventory settled", || async { app.count_rows(settled).await >= 2 }).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let order = app.get(&format!("/api/orders/{order_id}")).await.body;
    assert_eq!(statuses(&order), ["accepted", "awaiting_payment", "cancelled"], "cancelled once");
    assert_eq!(
        app.count_rows("SELECT count(*) FROM processed_events WHERE consumer = 'payment_timeout'")
            .await,
        1
    );
    assert_eq!(
        app.count_rows(settled).await,
        2,
        "inventory saw order.created and ONE payment.failed"
    );
    assert_eq!(app.count_rows("SELECT count(*) FROM payment_deadlines").await, 0);
    assert_eq!(app.available("tea").await, 5);
    assert_eq!(app.product("tea").await["stock"], 5);
    app.stop().await;
}

async fn forged_stale_and_mismatched_callbacks_are_refused(engines: Engines) {
    let clock = now_clock();
    let app = app_on(&engines, clock.clone()).await;
    app.put_product("pen", "2.50", 5).await;
    let order = awaiting(&app, "ann", &[("pen", 2)]).await;
    let body = paid(&order, "pay-1");

    let unsigned = app.post("/api/payments/callback", &body).await;
    assert_eq!((unsigned.status, unsigned.code()), (401, "bad_signature"));
    assert!(unsigned.headers.contains_key("www-authenticate"));
    let forged = callback_signed(&app, &clock, &body, "not-the-secret", 0).await;
    assert_eq!((forged.status, forged.code()), (401, "bad_signature"));
    let stale = callback_signed(&app, &clock, &body, SECRET, -301).await;
    assert_eq!((stale.status, stale.code()), (401, "stale_signature"));
    let future = callback_signed(&app, &clock, &body, SECRET, 301).await;
    assert_eq!((future.status, future.code()), (401, "stale_signature"));
    // Signed over other bytes than those sent.
    let raw = serde_json::to_vec(&body).unwrap();
    let tampered = app
        .send(
            app.client
                .post(app.url("/api/payments/callback"))
                .header(
                    signature::HEADER,
                    signature::sign(SECRET.as_bytes(), clock.now().0 / 1000, &raw),
                )
                .body(String::from_utf8(raw).unwrap().replace("pay-1", "pay-2")),
        )
        .await;
    assert_eq!((tampered.status, tampered.code()), (401, "bad_signature"));

    let mut cheap = body.clone();
    cheap["amount"] = json!("0.01");
    let mismatch = callback(&app, &clock, &cheap).await;
    assert_eq!((mismatch.status, mismatch.code()), (422, "amount_mismatch"));
    let mut unknown = body.clone();
    unknown["order_id"] = json!("01900000-0000-7000-8000-000000000000");
    let missing = callback(&app, &clock, &unknown).await;
    assert_eq!((missing.status, missing.code()), (404, "order_not_found"));
    let mut odd = body.clone();
    odd["status"] = json!("maybe");
    assert_eq!(callback(&app, &clock, &odd).await.code(), "invalid_status");
    let mut bad_amount = body.clone();
    bad_amount["amount"] = json!("1.999");
    assert_eq!(callback(&app, &clock, &bad_amount).await.code(), "invalid_amount");
    let mut no_id = body.clone();
    no_id["payment_id"] = json!("");
    assert_eq!(callback(&app, &clock, &no_id).await.code(), "invalid_payment_id");
    let signed_garbage = {
        let t = clock.now().0 / 1000;
        app.send(
            app.client
                .post(app.url("/api/payments/callback"))
                .header(signature::HEADER, signature::sign(SECRET.as_bytes(), t, b"{not json"))
                .body("{not json"),
        )
        .await
    };
    assert_eq!((signed_garbage.status, signed_garbage.code()), (400, "malformed_json"));

    // None of that touched the order.
    let shown = app.get(&format!("/api/orders/{}", order["order_id"].as_str().unwrap())).await;
    assert_eq!(shown.body["status"], "awaiting_payment");
    assert_eq!(app.count_rows("SELECT count(*) FROM payments").await, 0);
    let ok = callback(&app, &clock, &body).await;
    assert_eq!((ok.status, ok.body["outcome"].as_str()), (200, Some("paid")));
    app.stop().await;
}

async fn a_hundred_buyers_of_ten_units_who_never_pay_give_all_ten_back(engines: Engines) {
    let clock = now_clock();
    let app = Arc::new(app_on(&engines, clock.clone()).await);
    app.put_product("hot", "1.00", 10).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let app = app.clone();
        tasks.spawn(async move { app.order(&format!("buyer-{i}"), &[("hot", 1)]).await });
    }
    let mut placed = Vec::new();
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.unwrap();
        match reply.status {
            201 => placed.push(id(&reply)),
            409 => assert_eq!(reply.code(), "out_of_stock", "{:?}", reply.body),
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    assert_eq!(placed.len(), 10, "exactly the stock is sold");
    for order in &placed {
        app.wait_for_status(order, "awaiting_payment").await;
    }
    assert_eq!(app.available("hot").await, 0);
    clock.advance(PAY_WITHIN + Duration::from_secs(1));
    for order in &placed {
        app.wait_for_status(order, "cancelled").await;
    }
    eventually("all ten units on sale again", || async {
        let p = app.product("hot").await;
        p["stock"] == 10 && p["stock_available"] == 10
    })
    .await;
    let again = app.order("buyer-late", &[("hot", 10)]).await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    let Ok(app) = Arc::try_unwrap(app) else { panic!("a client task still holds the app") };
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_gateway_asks_the_provider_for_each_orders_payment_url() {
    let asked: Received = Arc::default();
    let provider = {
        let asked = asked.clone();
        axum::Router::new().route(
            "/intents",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let asked = asked.clone();
                async move {
                    let mut body: Value = serde_json::from_str(&body).unwrap();
                    let key = headers.get("idempotency-key").unwrap().to_str().unwrap();
                    body["idempotency_key"] = json!(key);
                    let url = format!("https://provider.example/pay/{key}");
                    asked.lock().unwrap().push(body);
                    axum::Json(json!({"payment_url": url, "intent_id": "pi_1"}))
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, provider).await });
    let clock = now_clock();
    let app = spawn_app_on(Engines::Embedded, tempfile::tempdir().unwrap(), clock.clone(), |s| {
        s.payment.mode = PaymentMode::AwaitCallback;
        s.payment.callback_secret = Some(Secret::new(SECRET));
        s.payment.gateway = ordermill_server::startup::settings::GatewayKind::Http;
        s.payment.url = Some(SecretUrl::new(format!("http://{addr}/intents")));
    })
    .await;
    app.put_product("tea", "3.30", 5).await;
    let order = awaiting(&app, "ann", &[("tea", 3)]).await;
    let order_id = order["order_id"].as_str().unwrap();
    assert_eq!(order["payment_url"], format!("https://provider.example/pay/{order_id}"));
    let asked = asked.lock().unwrap().clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert_eq!(asked[0]["mode"], "await_callback");
    assert_eq!(
        (asked[0]["order_id"].as_str(), asked[0]["idempotency_key"].as_str()),
        (Some(order_id), Some(order_id))
    );
    assert_eq!(asked[0]["amount"], "9.90");
    assert_eq!(
        asked[0]["pay_by"],
        clock.now().0 + 15 * 60 * 1000,
        "the default payment.pay_within"
    );
    app.stop().await;
}
