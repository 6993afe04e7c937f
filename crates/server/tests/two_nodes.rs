//! Two nodes on the same real PostgreSQL, RabbitMQ and Redis: what one node's catalog writes
//! do is seen by the other, and both sell from one stock count. Skipped with a reason when the
//! `ORDERMILL_TEST_*_URL` variables are unset.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{Engines, TestApp, spawn_app_on};

async fn node(engines: &Engines) -> TestApp {
    let clock = Arc::new(ordermill_core::SystemClock);
    spawn_app_on(engines.clone(), tempfile::tempdir().unwrap(), clock, |s| {
        s.catalog.refresh = ordermill_core::HumanDuration::from_millis(50);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_product_created_or_repriced_on_one_node_is_sold_by_the_other() {
    let Some(engines) = Engines::scaled() else { return };
    engines.prepare().await;
    let (a, b) = (node(&engines).await, node(&engines).await);
    assert_eq!(a.put_product("crab", "19.99", 5).await.status, 201);
    // Read through at once, priced within the refresh interval.
    assert_eq!(b.product("crab").await["stock_available"], 5);
    let deadline = Instant::now() + Duration::from_secs(10);
    let placed = loop {
        let reply = b.order("c-1", &[("crab", 2)]).await;
        if reply.status == 201 {
            break reply;
        }
        assert_eq!(reply.code(), "unknown_sku", "{:?}", reply.body);
        assert!(Instant::now() < deadline, "node b never learned of the product");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(placed.body["total"], "39.98");
    assert_eq!(a.available("crab").await, 3, "one stock count for both nodes");

    // The confirmed view lands in the shared read cache, where every node reads it.
    let id = placed.body["order_id"].as_str().unwrap().to_owned();
    a.wait_for_status(&id, "confirmed").await;
    let support::Engines::ScaledOut(scaled) = &engines else { unreachable!("scaled engines") };
    let client = redis::Client::open(scaled.redis.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let key = format!("{}:order:v2:{id}", scaled.name);
    let deadline = Instant::now() + Duration::from_secs(10);
    let cached: String = loop {
        let view: Option<String> =
            redis::cmd("GET").arg(&key).query_async(&mut redis).await.unwrap();
        if let Some(view) = view {
            break view;
        }
        assert!(Instant::now() < deadline, "the confirmed order never reached the shared cache");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(cached.contains(r#""status":"confirmed""#), "{cached}");
    assert_eq!(b.get(&format!("/api/orders/{id}")).await.body["status"], "confirmed");

    let body = json!({"name": "Crab", "price": "9.99", "stock": 5});
    a.send(a.client.put(a.url("/api/products/crab")).json(&body)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = b.order("c-2", &[("crab", 1)]).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        if reply.body["total"] == "9.99" {
            break;
        }
        assert!(Instant::now() < deadline, "node b kept the old price");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.stop().await;
    b.stop().await;
    engines.clean_up().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_sent_to_two_nodes_at_once_makes_one_order_and_fails_no_one_elses() {
    let Some(engines) = Engines::scaled() else { return };
    engines.prepare().await;
    let (a, b) = (node(&engines).await, node(&engines).await);
    assert_eq!(a.put_product("kelp", "1.00", 10_000).await.status, 201);
    b.product("kelp").await;
    let keyed = |app: &TestApp, key: String| {
        app.client
            .post(app.url("/api/orders"))
            .header("Idempotency-Key", key)
            .json(&support::order_body("dup-customer", &[("kelp", 1)]))
    };
    for round in 0..20 {
        let key = format!("race-{round}");
        // The same keyed request on both nodes, and unrelated orders that may share a group
        // commit with either.
        let (x, y, others) = tokio::join!(
            a.send(keyed(&a, key.clone())),
            b.send(keyed(&b, key.clone())),
            bystanders(&a, &b, round),
        );
        for reply in [&x, &y] {
            assert!(
                reply.status == 201 || reply.code() == "idempotency_key_in_use",
                "round {round}: {} {:?}",
                reply.status,
                reply.body
            );
        }
        let ids: std::collections::HashSet<_> = [&x, &y]
            .iter()
            .filter(|r| r.status == 201)
            .map(|r| r.body["order_id"].to_string())
            .collect();
        assert!(ids.len() <= 1, "round {round}: two orders for one key: {ids:?}");
        assert!(others.iter().all(|s| *s == 201), "round {round}: a bystander failed: {others:?}");
        // A retry after the race always answers with the one order.
        let retry = a.send(keyed(&a, key)).await;
        assert_eq!(retry.status, 201, "{:?}", retry.body);
        if let Some(id) = ids.iter().next() {
            assert_eq!(&retry.body["order_id"].to_string(), id);
        }
    }
    let keyed_orders =
        a.count_rows("SELECT count(*) FROM orders WHERE customer_id = 'dup-customer'").await;
    assert_eq!(keyed_orders, 20, "one order per key");
    a.stop().await;
    b.stop().await;
    engines.clean_up().await;
}

/// Four unkeyed orders from other customers, two on each node; their statuses.
async fn bystanders(a: &TestApp, b: &TestApp, round: usize) -> Vec<u16> {
    let names: Vec<String> =
        ["a", "b", "a2", "b2"].iter().map(|n| format!("by-{n}-{round}")).collect();
    let (p, q, r, s) = tokio::join!(
        a.order(&names[0], &[("kelp", 1)]),
        b.order(&names[1], &[("kelp", 1)]),
        a.order(&names[2], &[("kelp", 1)]),
        b.order(&names[3], &[("kelp", 1)]),
    );
    vec![p.status, q.status, r.status, s.status]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_order_on_another_node_for_a_new_product_is_taken_not_refused() {
    let Some(engines) = Engines::scaled() else { return };
    engines.prepare().await;
    // No refresh within the test: only the read-through on a miss can teach node b.
    let slow = |s: &mut ordermill_server::Settings| {
        s.catalog.refresh = ordermill_core::HumanDuration::from_secs(3600);
    };
    let a = spawn_app_on(
        engines.clone(),
        tempfile::tempdir().unwrap(),
        Arc::new(ordermill_core::SystemClock),
        slow,
    )
    .await;
    let b = spawn_app_on(
        engines.clone(),
        tempfile::tempdir().unwrap(),
        Arc::new(ordermill_core::SystemClock),
        slow,
    )
    .await;
    assert_eq!(a.put_product("urchin", "7.50", 4).await.status, 201);
    let placed = b.order("c-1", &[("urchin", 3)]).await;
    assert_eq!(placed.status, 201, "{:?}", placed.body);
    assert_eq!(placed.body["total"], "22.50");
    assert_eq!(a.available("urchin").await, 1, "one stock count for both nodes");
    // A SKU nobody created is still unknown, on every node.
    let ghost = b.order("c-2", &[("no-such-sku", 1)]).await;
    assert_eq!((ghost.status, ghost.code()), (422, "unknown_sku"), "{:?}", ghost.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_customer_limit_holds_across_nodes() {
    let Some(engines) = Engines::scaled() else { return };
    engines.prepare().await;
    let (a, b) = (node(&engines).await, node(&engines).await);
    let limited = a
        .send(
            reqwest::Client::new()
                .put(a.url("/api/products/scallop"))
                .bearer_auth(support::MERCHANT_TOKEN)
                .json(&json!({"name": "Scallop", "price": "3.00", "stock": 100, "per_customer_limit": 2})),
        )
        .await;
    assert_eq!(limited.status, 201, "{:?}", limited.body);
    assert_eq!(a.order("c-1", &[("scallop", 2)]).await.status, 201);
    // Node b's own count has never seen c-1's order: the store refuses the third unit.
    let third = b.order("c-1", &[("scallop", 1)]).await;
    assert_eq!((third.status, third.code()), (409, "limit_exceeded"), "{:?}", third.body);
    assert_eq!(b.order("c-2", &[("scallop", 2)]).await.status, 201, "other customers buy on");
    assert_eq!(a.available("scallop").await, 96, "the refused unit went back on sale");

    // What each node shows follows the store within its refresh, wherever the limit was set.
    shows_limit(&b, json!(2)).await;
    assert!(put_limit(&b, json!(5)).await < 300);
    shows_limit(&a, json!(5)).await;
    assert!(put_limit(&a, serde_json::Value::Null).await < 300);
    shows_limit(&b, serde_json::Value::Null).await;
    a.stop().await;
    b.stop().await;
    engines.clean_up().await;
}

/// Waits (10 s at most) until `node`'s `GET /api/products/scallop` shows `want` as its limit.
async fn shows_limit(node: &TestApp, want: serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let shown = node.product("scallop").await["per_customer_limit"].clone();
        if shown == want {
            return;
        }
        assert!(Instant::now() < deadline, "still shows {shown}, not {want}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sets scallop's limit through `node`; the status.
async fn put_limit(node: &TestApp, limit: serde_json::Value) -> u16 {
    let body =
        json!({"name": "Scallop", "price": "3.00", "stock": 100, "per_customer_limit": limit});
    let request = reqwest::Client::new()
        .put(node.url("/api/products/scallop"))
        .bearer_auth(support::MERCHANT_TOKEN)
        .json(&body);
    node.send(request).await.status
}

/// A node that never saw a key does not read the store before committing a keyed order; the
/// store refuses the key another node already stored, and the stored order decides the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_stored_through_one_node_is_replayed_or_refused_by_the_other() {
    let Some(engines) = Engines::scaled() else { return };
    engines.prepare().await;
    let (a, b) = (node(&engines).await, node(&engines).await);
    assert_eq!(a.put_product("nori", "2.00", 100).await.status, 201);
    b.product("nori").await;
    let keyed = |app: &TestApp, quantity: i64| {
        app.client
            .post(app.url("/api/orders"))
            .header("Idempotency-Key", "stored-once")
            .json(&support::order_body("kim", &[("nori", quantity)]))
    };
    let first = a.send(keyed(&a, 2)).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let other = b.send(keyed(&b, 1)).await;
    assert_eq!((other.status, other.code()), (422, "idempotency_key_reused"), "{:?}", other.body);
    let again = b.send(keyed(&b, 2)).await;
    assert_eq!((again.status, &again.body["order_id"]), (201, &first.body["order_id"]));
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(b.available("nori").await, 98, "two units, taken once");
    let orders = b.count_rows("SELECT count(*) FROM orders WHERE customer_id = 'kim'").await;
    assert_eq!(orders, 1);

    // A batch's keys the node has not seen are read from the store together.
    let keyed_order = |customer: &str, key: &str, quantity: i64| {
        support::keyed_batch_order(customer, "nori", quantity, key)
    };
    let earlier = json!({"orders": [
        keyed_order("kim", "b-stored", 1),
        keyed_order("kim", "b-other", 1),
    ]});
    let stored = a.post("/api/orders/batch", &earlier).await;
    assert_eq!(stored.body["accepted"], 2, "{:?}", stored.body);
    let retried = json!({"orders": [
        keyed_order("kim", "b-stored", 1),
        keyed_order("kim", "b-other", 2),
        keyed_order("kim", "b-new", 1),
        keyed_order("lee", "b-stored", 1),
    ]});
    let batch = b.post("/api/orders/batch", &retried).await;
    let results = batch.body["results"].as_array().unwrap();
    let statuses: Vec<_> = results.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [201, 422, 201, 201], "{:?}", batch.body);
    assert_eq!(results[0]["replayed"], true);
    assert_eq!(results[0]["order"]["order_id"], stored.body["results"][0]["order"]["order_id"]);
    assert_eq!(results[1]["error"]["code"], "idempotency_key_reused");
    assert!(results[2].get("replayed").is_none() && results[3].get("replayed").is_none());
    assert_eq!(b.available("nori").await, 94, "the stored orders' units taken once");
    a.stop().await;
    b.stop().await;
    engines.clean_up().await;
}
