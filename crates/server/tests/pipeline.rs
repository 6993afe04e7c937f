//! The order pipeline end to end on the real app: confirmation, cancellation with
//! compensation, retries with exactly one charge, dead letters and replay, backpressure.
//!
//! Every scenario runs on the embedded engines (`<name>::embedded`) and on the real
//! PostgreSQL, RabbitMQ and Redis (`<name>::scaled_out`, skipped with a reason when their
//! `ORDERMILL_TEST_*_URL` variables are unset): same handlers, same outcomes.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[macro_use]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use serde_json::Value;
on_both_engines!(
    an_order_is_confirmed_once_stock_is_deducted_and_payment_succeeds,
    a_declined_payment_cancels_the_order_and_gives_the_stock_back,
    a_flaky_gateway_is_retried_and_charges_exactly_once,
    a_gateway_that_stays_down_dead_letters_the_payment,
    dead_letters_are_listed_a_page_at_a_time,
    dead_letters_replay_once_the_gateway_is_fixed,
    the_admin_api_needs_its_token,
    a_full_backlog_answers_503_with_retry_after_then_recovers,
    a_gateway_slower_than_the_message_timeout_fails_that_message_only,
    the_webhook_notifier_posts_each_event_once_and_retries_failures,
    a_gateway_that_refuses_the_request_itself_dead_letters_at_once,
);

use support::{Engines, TestApp, spawn_app_on};

/// Fast retries so failure paths finish in milliseconds.
async fn app_with(
    engines: &Engines,
    tweak: impl FnOnce(&mut ordermill_server::Settings),
) -> TestApp {
    let clock = Arc::new(ordermill_core::SystemClock);
    spawn_app_on(engines.clone(), tempfile::tempdir().unwrap(), clock, |s| {
        s.workers.retry_base = ordermill_core::HumanDuration::from_millis(10);
        s.workers.retry_max = ordermill_core::HumanDuration::from_millis(50);
        s.workers.max_attempts = 4;
        s.admin_token = Some(ordermill_server::startup::settings::Secret::new("s3cret"));
        tweak(s);
    })
    .await
}

fn id(reply: &support::Reply) -> String {
    reply.body["order_id"].as_str().unwrap().to_owned()
}

/// Polls the admin API until `queue` holds `n` dead letters (10 s at most); returns the list.
async fn wait_dead(app: &TestApp, queue: &str, n: i64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = app
            .send(app.client.get(app.url(&format!("/admin/dlq/{queue}"))).bearer_auth("s3cret"))
            .await;
        if reply.body["count"] == n {
            return reply.body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{queue} never held {n} dead letters: {:?}",
            reply.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn statuses(order: &Value) -> Vec<&str> {
    order["history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect()
}

async fn an_order_is_confirmed_once_stock_is_deducted_and_payment_succeeds(engines: Engines) {
    let app = app_with(&engines, |_| {}).await;
    app.put_product("a", "5.00", 10).await;
    let placed = app.order("c-1", &[("a", 2)]).await;
    let order = app.wait_for_status(&id(&placed), "confirmed").await;
    assert_eq!(statuses(&order), vec!["accepted", "confirmed"]);
    let product = app.product("a").await;
    assert_eq!(
        (product["stock"].as_i64(), product["stock_available"].as_i64()),
        (Some(8), Some(8))
    );
    assert_eq!(app.count_rows("SELECT count(*) FROM payments WHERE status = 'succeeded'").await, 1);
}

async fn a_declined_payment_cancels_the_order_and_gives_the_stock_back(engines: Engines) {
    let app = app_with(&engines, |_| {}).await;
    app.put_product("a", "5.00", 10).await;
    let placed = app.order("test-decline", &[("a", 3)]).await;
    let now = app.available("a").await;
    assert!(matches!(now, 7 | 10), "held while pending, or already given back; never {now}");
    let order = app.wait_for_status(&id(&placed), "cancelled").await;
    assert_eq!(statuses(&order), vec!["accepted", "cancelled"]);
    // Release happens on inventory's payment.failed delivery, just after the cancellation.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.available("a").await != 10 {
        assert!(std::time::Instant::now() < deadline, "stock never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let product = app.product("a").await;
    assert_eq!(product["stock"], 10, "stock of record is whole again");
    assert_eq!(app.count_rows("SELECT count(*) FROM payments WHERE status = 'declined'").await, 1);
    assert_eq!(app.count_rows("SELECT count(*) FROM payments WHERE status = 'succeeded'").await, 0);
}

async fn a_flaky_gateway_is_retried_and_charges_exactly_once(engines: Engines) {
    let app = app_with(&engines, |_| {}).await;
    app.put_product("a", "5.00", 10).await;
    let placed = app.order("test-flaky", &[("a", 1)]).await;
    app.wait_for_status(&id(&placed), "confirmed").await;
    assert_eq!(app.count_rows("SELECT count(*) FROM payments").await, 1, "one charge");
    assert_eq!(
        app.count_rows("SELECT count(*) FROM processed_events WHERE consumer = 'payment'").await,
        1
    );
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let retries: f64 = metrics
        .lines()
        .find(|l| {
            l.starts_with("ordermill_consumer_messages_total")
                && l.contains(r#"outcome="retry""#)
                && l.contains(r#"queue="payment""#)
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    assert!(
        retries >= 2.0,
        "test-flaky fails twice before succeeding; metrics say {retries} retries"
    );
}

async fn a_gateway_that_stays_down_dead_letters_the_payment(engines: Engines) {
    let app = app_with(&engines, |_| {}).await;
    app.put_product("a", "5.00", 10).await;
    let placed = app.order("test-down", &[("a", 1)]).await;
    let dead = wait_dead(&app, "payment", 1).await;
    let letter = &dead["dead_letters"][0];
    assert_eq!(letter["attempts"], 4);
    assert_eq!(letter["routing_key"], "order.created");
    assert_eq!(letter["payload"]["order_id"], id(&placed).as_str());
    assert!(letter["error"].as_str().unwrap().contains("test-down"), "{letter}");
    assert_eq!(app.get(&format!("/api/orders/{}", id(&placed))).await.body["status"], "accepted");
    assert_eq!(app.count_rows("SELECT count(*) FROM payments").await, 0);
}

async fn dead_letters_are_listed_a_page_at_a_time(engines: Engines) {
    let app = app_with(&engines, |_| {}).await;
    app.put_product("a", "5.00", 10).await;
    let mut placed = Vec::new();
    for n in 0..3 {
        placed.push(id(&app.order("test-down", &[("a", 1)]).await));
        // One at a time, so that the dead letters' order is the orders' order.
        wait_dead(&app, "payment", n + 1).await;
    }
    let page = |query: &'static str| {
        app.send(
            app.client.get(app.url(&format!("/admin/dlq/payment?{query}"))).bearer_auth("s3cret"),
        )
    };
    let first = page("limit=2").await.body;
    assert_eq!((first["count"].as_i64(), first["total"].as_i64()), (Some(2), Some(3)));
    assert_eq!(first["dead_letters"][0]["payload"]["order_id"], placed[0].as_str(), "oldest first");
    assert_eq!(first["next"], "/admin/dlq/payment?limit=2&offset=2");
    let second = page("limit=2&offset=2").await.body;
    assert_eq!((second["count"].as_i64(), second["offset"].as_i64()), (Some(1), Some(2)));
    assert_eq!(second["dead_letters"][0]["payload"]["order_id"], placed[2].as_str());
    assert!(second["next"].is_null(), "the last page links nowhere: {second}");
    assert_eq!(first["dead_letters"][1]["order_id"], placed[1].as_str(), "each names its order");

    // One at a time, by event id.
    let admin = |method: reqwest::Method, path: String| {
        app.send(app.client.request(method, app.url(&path)).bearer_auth("s3cret"))
    };
    let nobody = uuid::Uuid::now_v7();
    let missing =
        admin(reqwest::Method::POST, format!("/admin/dlq/payment/replay?event_id={nobody}")).await;
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(missing.body["error"]["code"], "dead_letter_not_found");
    let bad = admin(reqwest::Method::DELETE, "/admin/dlq/payment?event_id=nope".into()).await;
    assert_eq!((bad.status, bad.body["error"]["code"].as_str()), (400, Some("invalid_query")));
    let event = first["dead_letters"][1]["event_id"].as_str().unwrap();
    let purged =
        admin(reqwest::Method::DELETE, format!("/admin/dlq/payment?event_id={event}")).await;
    assert_eq!((purged.status, purged.body["purged"].as_i64()), (200, Some(1)), "{}", purged.body);
    let rest = page("limit=10").await.body;
    let orders: Vec<&str> = rest["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(orders, vec![placed[0].as_str(), placed[2].as_str()], "the others stay: {rest}");
}

/// A payment service that is down until told otherwise; counts charges.
async fn gateway_stub(down: Arc<AtomicBool>, charges: Arc<AtomicUsize>) -> String {
    let app = axum::Router::new().route(
        "/charge",
        axum::routing::post(move || {
            let (down, charges) = (down.clone(), charges.clone());
            async move {
                if down.load(Ordering::SeqCst) {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    charges.fetch_add(1, Ordering::SeqCst);
                    StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/charge")
}

async fn dead_letters_replay_once_the_gateway_is_fixed(engines: Engines) {
    let down = Arc::new(AtomicBool::new(true));
    let charges = Arc::new(AtomicUsize::new(0));
    let url = gateway_stub(down.clone(), charges.clone()).await;
    let app = app_with(&engines, |s| {
        s.payment.gateway = ordermill_server::startup::settings::GatewayKind::Http;
        s.payment.url = Some(ordermill_server::startup::settings::SecretUrl::new(url));
    })
    .await;
    app.put_product("a", "5.00", 10).await;
    let placed = app.order("c-9", &[("a", 1)]).await;
    wait_dead(&app, "payment", 1).await;
    let auth = |r: reqwest::RequestBuilder| r.bearer_auth("s3cret");
    down.store(false, Ordering::SeqCst); // "fix" the gateway
    let replay = app.send(auth(app.client.post(app.url("/admin/dlq/payment/replay")))).await;
    assert_eq!(replay.body["replayed"], 1);
    app.wait_for_status(&id(&placed), "confirmed").await;
    assert_eq!(charges.load(Ordering::SeqCst), 1);
    assert_eq!(
        app.send(auth(app.client.get(app.url("/admin/dlq/payment")))).await.body["count"],
        0
    );
    let purge = app.send(auth(app.client.delete(app.url("/admin/dlq/payment")))).await;
    assert_eq!(purge.body["purged"], 0);
}

async fn the_admin_api_needs_its_token(engines: Engines) {
    let app = app_with(&engines, |_| {}).await;
    let reply = app.get("/admin/dlq/payment").await;
    assert_eq!((reply.status, reply.code()), (401, "unauthorized"));
    let reply = app.send(app.client.get(app.url("/admin/dlq/payment")).bearer_auth("wrong")).await;
    assert_eq!(reply.status, 401);
    let reply = app.send(app.client.get(app.url("/admin/dlq/nope")).bearer_auth("s3cret")).await;
    assert_eq!((reply.status, reply.code()), (404, "unknown_queue"));
    for query in ["limit=0", "limit=1001", "limit=x", "offset=-1", "page=2"] {
        let url = app.url(&format!("/admin/dlq/payment?{query}"));
        let reply = app.send(app.client.get(url).bearer_auth("s3cret")).await;
        assert_eq!((reply.status, reply.code()), (400, "invalid_query"), "{query}");
    }
    let queues = app.send(app.client.get(app.url("/admin/queues")).bearer_auth("s3cret")).await;
    assert_eq!(
        queues.body["queues"].as_array().unwrap().len(),
        4,
        "inventory, payment, notify, reports"
    );

    let closed = app_with(&engines, |s| s.admin_token = None).await;
    let reply = closed
        .send(closed.client.get(closed.url("/admin/dlq/payment")).bearer_auth("s3cret"))
        .await;
    assert_eq!((reply.status, reply.code()), (404, "admin_disabled"));
}

async fn a_full_backlog_answers_503_with_retry_after_then_recovers(engines: Engines) {
    let app = app_with(&engines, |s| {
        s.max_backlog = 5;
        s.payment.latency = ordermill_core::HumanDuration::from_millis(100);
        s.workers.concurrency = 1;
        s.workers.batch_size = 1;
    })
    .await;
    app.put_product("a", "1.00", 1000).await;
    // The broker's backlog figure is refreshed about once a second, the embedded one at once:
    // keep ordering until refused, for a bounded time.
    let mut overloaded = None;
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let mut i = 0;
    while overloaded.is_none() && std::time::Instant::now() < until {
        let reply = app.order(&format!("c-{i}"), &[("a", 1)]).await;
        i += 1;
        if reply.status == 503 {
            overloaded = Some(reply);
        }
        // 20 orders/s against 10 charges/s: the backlog grows, but not so far ahead of the
        // broker's figure that draining it takes longer than the test.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply =
        overloaded.expect("a slow gateway and a backlog bound of 5 must refuse orders within 10 s");
    assert_eq!(reply.code(), "overloaded");
    assert_eq!(reply.headers["retry-after"], "1");
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let reply = app.order("late", &[("a", 1)]).await;
        if reply.status == 201 {
            break;
        }
        assert_eq!(reply.code(), "overloaded");
        assert!(std::time::Instant::now() < deadline, "intake never recovered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn a_gateway_that_refuses_the_request_itself_dead_letters_at_once(engines: Engines) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let stub = axum::Router::new().route(
        "/charge",
        axum::routing::post(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { StatusCode::UNAUTHORIZED }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, stub).await });
    let app = app_with(&engines, |s| {
        s.payment.gateway = ordermill_server::startup::settings::GatewayKind::Http;
        s.payment.url = Some(ordermill_server::startup::settings::SecretUrl::new(format!(
            "http://{addr}/charge"
        )));
        s.workers.max_attempts = 25;
    })
    .await;
    app.put_product("a", "5.00", 10).await;
    let placed = app.order("c-401", &[("a", 1)]).await;
    let dead = wait_dead(&app, "payment", 1).await;
    let letter = &dead["dead_letters"][0];
    assert_eq!(letter["attempts"], 1, "a 401 is not retried 25 times: {letter}");
    assert!(letter["error"].as_str().unwrap().contains("401"), "{letter}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(app.get(&format!("/api/orders/{}", id(&placed))).await.body["status"], "accepted");
}

async fn a_gateway_slower_than_the_message_timeout_fails_that_message_only(engines: Engines) {
    let app = axum::Router::new().route(
        "/charge",
        axum::routing::post(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            StatusCode::OK
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let app = app_with(&engines, |s| {
        s.payment.gateway = ordermill_server::startup::settings::GatewayKind::Http;
        s.payment.url = Some(ordermill_server::startup::settings::SecretUrl::new(format!(
            "http://{addr}/charge"
        )));
        s.workers.message_timeout = ordermill_core::HumanDuration::from_millis(100);
        s.workers.max_attempts = 2;
    })
    .await;
    app.put_product("a", "5.00", 10).await;
    let placed = app.order("c-slow", &[("a", 1)]).await;
    let dead = wait_dead(&app, "payment", 1).await;
    assert!(
        dead["dead_letters"][0]["error"].as_str().unwrap().contains("no answer within 100 ms"),
        "{dead}"
    );
    assert_eq!(app.get(&format!("/api/orders/{}", id(&placed))).await.body["status"], "accepted");
    // Inventory was not held up by the slow gateway.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.product("a").await["stock"] != 9 {
        assert!(std::time::Instant::now() < deadline, "inventory never deducted");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn the_webhook_notifier_posts_each_event_once_and_retries_failures(engines: Engines) {
    let received = Arc::new(std::sync::Mutex::new(Vec::<Value>::new()));
    let failures_left = Arc::new(AtomicUsize::new(1));
    let hook = {
        let (received, failures_left) = (received.clone(), failures_left.clone());
        axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, raw: String| {
                let (received, failures_left) = (received.clone(), failures_left.clone());
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .map_or(Value::Null, |k| Value::String(k.to_owned()))
                    };
                    let mut body: Value = serde_json::from_str(&raw).unwrap();
                    body["idempotency_key"] = header("idempotency-key");
                    // Checked as a receiver would: recomputed over the raw body and its `t`.
                    let signature = header("x-ordermill-signature");
                    let t = signature
                        .as_str()
                        .and_then(|s| s.strip_prefix("t="))
                        .and_then(|s| s.split(',').next())
                        .and_then(|t| t.parse::<i64>().ok());
                    body["signature_ok"] = Value::Bool(t.is_some_and(|t| {
                        signature
                            == ordermill_server::adapters::integrations::signature::sign(
                                b"whsec-pipeline",
                                t,
                                raw.as_bytes(),
                            )
                    }));
                    // The first call fails: the queue must retry it.
                    if failures_left
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_ok()
                    {
                        return StatusCode::INTERNAL_SERVER_ERROR;
                    }
                    received.lock().unwrap().push(body);
                    StatusCode::NO_CONTENT
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hook).await });
    let app = app_with(&engines, |s| {
        s.notify.notifier = ordermill_server::startup::settings::NotifierKind::Webhook;
        s.notify.url = Some(ordermill_server::startup::settings::SecretUrl::new(format!(
            "http://{addr}/hook"
        )));
        s.notify.webhook_secret =
            Some(ordermill_server::startup::settings::Secret::new("whsec-pipeline"));
    })
    .await;
    app.put_product("a", "5.00", 10).await;
    let placed = app.order("c-hook", &[("a", 1)]).await;
    app.wait_for_status(&id(&placed), "confirmed").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while received.lock().unwrap().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "webhook got {:?}", received.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // room for a wrong duplicate to show
    let got = received.lock().unwrap().clone();
    let mut kinds: Vec<&str> = got.iter().map(|n| n["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        vec!["order.confirmed", "order.created"],
        "each event notified once: {got:?}"
    );
    assert!(
        got.iter().all(|n| n["order_id"] == id(&placed).as_str() && n["customer_id"] == "c-hook")
    );
    assert!(
        got.iter()
            .all(|n| n["idempotency_key"].is_string() && n["idempotency_key"] == n["event_id"]),
        "each call carries its event id as Idempotency-Key: {got:?}"
    );
    assert!(
        got.iter().all(|n| n["signature_ok"] == true),
        "each call is signed with notify.webhook_secret: {got:?}"
    );
    assert_eq!(
        app.count_rows("SELECT count(*) FROM processed_events WHERE consumer = 'notify'").await,
        2
    );
}

/// Embedded only (the shared databases drop whole daily partitions, covered by their store
/// contracts): `ordermill serve` deletes consumers' records older than
/// `sqlite.processed_retention` and keeps the newer ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_records_past_the_retention_are_removed_and_newer_ones_kept() {
    let day = Duration::from_secs(86_400);
    let clock = Arc::new(ordermill_core::ManualClock::new(ordermill_core::Clock::now(
        &ordermill_core::SystemClock,
    )));
    let app = spawn_app_on(Engines::Embedded, tempfile::tempdir().unwrap(), clock.clone(), |s| {
        s.sqlite.processed_retention = ordermill_core::HumanDuration::from_secs(2 * 86_400);
        s.sqlite.maintenance_interval = ordermill_core::HumanDuration::from_millis(50);
    })
    .await;
    app.put_product("crab", "19.99", 10).await;
    let old = id(&app.order("ann", &[("crab", 1)]).await);
    app.wait_for_status(&old, "confirmed").await;
    let records = "SELECT count(*) FROM processed_events";
    // Inventory's, payment's, and notify's for order.created and order.confirmed; the last may
    // come a moment after the order reads confirmed.
    let per_order = 4;
    support::eventually("ann's records", || async { app.count(records) == per_order }).await;

    clock.advance(day);
    let newer = id(&app.order("bob", &[("crab", 1)]).await);
    app.wait_for_status(&newer, "confirmed").await;
    support::eventually("bob's records", || async { app.count(records) == 2 * per_order }).await;
    clock.advance(day + day / 2);
    // Ann's records are two and a half days old now, Bob's one and a half: only Ann's go.
    support::eventually("ann's records removed", || async { app.count(records) == per_order })
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.count(records), per_order, "bob's records, within the retention, stay");
    assert_eq!(app.get(&format!("/api/orders/{old}")).await.body["status"], "confirmed");
    app.stop().await;
}
