//! Operators' order actions on the real app: an order stuck in `accepted` after its payment was
//! dead-lettered is found by `GET /admin/orders?status=accepted&older_than=...` and cancelled by
//! `POST /admin/orders/{id}/cancel` through the normal compensation path (stock back in store
//! and cache, the customer notified); a confirmed order is refused; everything needs the
//! admin token.
//!
//! Every scenario runs twice: on the embedded engines (`<name>::embedded`) and on the real
//! PostgreSQL, RabbitMQ and Redis (`<name>::scaled_out`).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;

use ordermill_core::{Clock, HumanDuration, ManualClock, SystemClock};
use ordermill_server::startup::settings::Secret;
use serde_json::{Value, json};
use support::{Engines, Reply, TestApp, spawn_app_on};

on_both_engines!(a_stuck_order_is_found_and_cancelled_with_its_stock_back);

const ADMIN: &str = "admin-token-for-tests";

async fn admin(app: &TestApp, request: reqwest::RequestBuilder) -> Reply {
    app.send(request.header("authorization", format!("Bearer {ADMIN}"))).await
}

fn ids(list: &Reply) -> Vec<&str> {
    list.body["orders"]
        .as_array()
        .unwrap_or_else(|| panic!("{:?}", list.body))
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect()
}

async fn a_stuck_order_is_found_and_cancelled_with_its_stock_back(engines: Engines) {
    let clock = Arc::new(ManualClock::new(SystemClock.now()));
    let app = spawn_app_on(engines.clone(), tempfile::tempdir().unwrap(), clock.clone(), |s| {
        s.admin_token = Some(Secret::new(ADMIN));
        // test-down's charge always fails: with one attempt it is dead-lettered at once and its
        // order stays accepted, its stock held.
        s.workers.max_attempts = 1;
        s.workers.retry_base = HumanDuration::from_millis(10);
    })
    .await;
    app.put_product("crab", "19.99", 10).await;
    let stuck = app.order("test-down", &[("crab", 3)]).await;
    assert_eq!(stuck.status, 201, "{:?}", stuck.body);
    let stuck_id = stuck.body["order_id"].as_str().unwrap().to_owned();
    let paid = app.order("ann", &[("crab", 1)]).await;
    let paid_id = paid.body["order_id"].as_str().unwrap().to_owned();
    app.wait_for_status(&paid_id, "confirmed").await;
    let dead = "/admin/dlq/payment";
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while admin(&app, app.client.get(app.url(dead))).await.body["total"] != 1 {
        assert!(std::time::Instant::now() < deadline, "the charge was never dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.available("crab").await, 6);

    // Found among accepted orders, only once older than asked for.
    let listed = |query: &'static str| {
        let app = &app;
        async move { admin(app, app.client.get(app.url(&format!("/admin/orders?{query}")))).await }
    };
    assert_eq!(ids(&listed("status=accepted").await), [stuck_id.as_str()]);
    assert!(ids(&listed("status=accepted&older_than=10m").await).is_empty());
    clock.advance(Duration::from_secs(11 * 60));
    assert_eq!(ids(&listed("status=accepted&older_than=10m").await), [stuck_id.as_str()]);
    assert_eq!(ids(&listed("status=confirmed&limit=1").await), [paid_id.as_str()]);
    assert!(ids(&listed("status=accepted&within=1m").await).is_empty(), "outside the window");
    for bad in ["status=shipped", "older_than=soon", "limit=0", "within=1m&older_than=5m", "x=1"] {
        let reply = listed(bad).await;
        assert_eq!((reply.status, reply.code()), (400, "invalid_query"), "{bad}: {:?}", reply.body);
    }

    // Cancelled through the compensation path: stock of record and the cache get it back.
    let cancel = |id: String, body: Value| {
        let app = &app;
        async move {
            let url = app.url(&format!("/admin/orders/{id}/cancel"));
            admin(app, app.client.post(url).json(&body)).await
        }
    };
    let done =
        cancel(stuck_id.clone(), json!({"reason": "payment dead-lettered; customer asked"})).await;
    assert_eq!(done.status, 200, "{:?}", done.body);
    assert_eq!(
        (done.body["outcome"].as_str(), done.body["order"]["status"].as_str()),
        (Some("cancelled"), Some("cancelled"))
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let product = app.product("crab").await;
        if product["stock"] == 9 && product["stock_available"] == 9 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "units never came back: {product}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let again = cancel(stuck_id.clone(), json!({})).await;
    assert_eq!((again.status, again.body["outcome"].as_str()), (200, Some("already_cancelled")));
    // The document allows no body, `null`, or a null reason, for the default reason.
    let url = app.url(&format!("/admin/orders/{stuck_id}/cancel"));
    for body in ["", "null", r#"{"reason": null}"#] {
        let reply = admin(&app, app.client.post(&url).body(body)).await;
        assert_eq!(reply.status, 200, "body {body:?}: {:?}", reply.body);
    }
    assert!(ids(&listed("status=accepted").await).is_empty());
    assert_eq!(ids(&listed("status=cancelled").await), [stuck_id.as_str()]);

    let confirmed = cancel(paid_id.clone(), json!({})).await;
    assert_eq!((confirmed.status, confirmed.code()), (409, "order_confirmed"));
    let missing = cancel("01900000-0000-7000-8000-000000000000".into(), json!({})).await;
    assert_eq!((missing.status, missing.code()), (404, "order_not_found"));
    let bad_reason = cancel(paid_id.clone(), json!({"reason": ""})).await;
    assert_eq!((bad_reason.status, bad_reason.code()), (422, "invalid_reason"));
    let anonymous = app
        .send(app.client.post(app.url(&format!("/admin/orders/{paid_id}/cancel"))).json(&json!({})))
        .await;
    assert_eq!((anonymous.status, anonymous.code()), (401, "unauthorized"));
    let peek = app.send(app.client.get(app.url("/admin/orders?status=accepted"))).await;
    assert_eq!(peek.status, 401, "the merchant token is not the admin token");
    app.stop().await;
}
