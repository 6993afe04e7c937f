//! Order intake end to end over HTTP: happy path, replay, concurrency, restart, failed commits.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use serde_json::json;
use support::{keyed_batch_order, order_body, spawn_app, spawn_app_in};

#[tokio::test]
async fn an_order_is_priced_from_the_catalog_stored_and_readable() {
    let app = spawn_app().await;
    assert_eq!(app.put_product("sku-1", "19.99", 10).await.status, 201);

    let reply = app.order("c-1", &[("sku-1", 2)]).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.body["status"], "accepted");
    assert_eq!(reply.body["total"], "39.98");
    assert_eq!(reply.body["items"][0]["unit_price"], "19.99");
    assert_eq!(reply.body["items"][0]["line_total"], "39.98");
    let id = reply.body["order_id"].as_str().unwrap().to_owned();
    assert_eq!(reply.headers["location"], format!("/api/orders/{id}").as_str());

    let mut stored = app.get(&format!("/api/orders/{id}")).await.body;
    assert_eq!(stored["history"][0]["status"], "accepted");
    // The pipeline moves the order on; everything else reads back as answered.
    for changing in ["status", "history"] {
        stored.as_object_mut().unwrap().remove(changing);
    }
    let mut answered = reply.body.clone();
    for changing in ["status", "history"] {
        answered.as_object_mut().unwrap().remove(changing);
    }
    assert_eq!(stored, answered);
    assert_eq!(app.available("sku-1").await, 8);
}

#[tokio::test]
async fn order_ids_are_time_ordered() {
    let app = spawn_app().await;
    app.put_product("a", "1.00", 100).await;
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(app.order("c", &[("a", 1)]).await.body["order_id"].as_str().unwrap().to_owned());
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
}

#[tokio::test]
async fn replaying_an_idempotency_key_returns_the_first_response_and_writes_nothing() {
    let app = spawn_app().await;
    app.put_product("sku-1", "5.00", 10).await;
    let body = order_body("c-1", &[("sku-1", 3)]);
    let send = || {
        app.send(
            app.client.post(app.url("/api/orders")).header("Idempotency-Key", "key-1").json(&body),
        )
    };

    let first = send().await;
    assert_eq!(first.status, 201);
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = send().await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body, "same order, same body");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(app.available("sku-1").await, 7, "stock taken once");

    let other = app
        .send(
            app.client
                .post(app.url("/api/orders"))
                .header("Idempotency-Key", "key-1")
                .json(&order_body("c-1", &[("sku-1", 1)])),
        )
        .await;
    assert_eq!((other.status, other.code()), (422, "idempotency_key_reused"));
    assert_eq!(app.available("sku-1").await, 7);
}

#[tokio::test]
async fn idempotency_keys_are_remembered_across_a_restart() {
    let app = spawn_app().await;
    app.put_product("sku-1", "5.00", 10).await;
    let body = order_body("c-1", &[("sku-1", 3)]);
    let first = app
        .send(app.client.post(app.url("/api/orders")).header("Idempotency-Key", "k").json(&body))
        .await;
    let dir = app.stop().await;

    // A new node knows no key: a keyed order commits without reading the store first, and the
    // store's uniqueness refuses a key it holds; the stored order then decides the answer.
    let app = spawn_app_in(dir, |_| {}).await;
    let other = app
        .send(
            app.client
                .post(app.url("/api/orders"))
                .header("Idempotency-Key", "k")
                .json(&order_body("c-1", &[("sku-1", 1)])),
        )
        .await;
    assert_eq!((other.status, other.code()), (422, "idempotency_key_reused"));
    assert_eq!(app.available("sku-1").await, 7, "the refused order's unit is back");
    let dir = app.stop().await;

    let app = spawn_app_in(dir, |_| {}).await;
    let again = app
        .send(app.client.post(app.url("/api/orders")).header("Idempotency-Key", "k").json(&body))
        .await;
    assert_eq!(again.status, 201);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(app.available("sku-1").await, 7);
    assert_eq!(app.count("SELECT count(*) FROM orders"), 1, "nothing new written");
}

#[tokio::test]
async fn a_retry_after_its_sku_sold_out_still_replays_the_stored_order() {
    let app = spawn_app().await;
    app.put_product("last", "5.00", 2).await;
    let body = order_body("c-1", &[("last", 1)]);
    let keyed =
        || app.client.post(app.url("/api/orders")).header("Idempotency-Key", "k-1").json(&body);
    let first = app.send(keyed()).await;
    assert_eq!(first.status, 201);
    assert_eq!(app.order("c-2", &[("last", 1)]).await.status, 201);
    let dir = app.stop().await;

    // A node that has not seen the key: the reservation fails (sold out), and the stored
    // order with this key is the answer, not the refusal.
    let app = spawn_app_in(dir, |_| {}).await;
    let keyed =
        || app.client.post(app.url("/api/orders")).header("Idempotency-Key", "k-1").json(&body);
    let again = app.send(keyed()).await;
    assert_eq!((again.status, &again.body), (201, &first.body), "{:?}", again.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let fresh =
        app.send(app.client.post(app.url("/api/orders")).json(&order_body("c-3", &[("last", 1)])));
    assert_eq!(fresh.await.code(), "out_of_stock", "keyless orders are simply refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_racing_for_100_units_get_exactly_100() {
    let app = std::sync::Arc::new(spawn_app().await);
    app.put_product("hot", "9.90", 100).await;
    let mut clients = Vec::new();
    for c in 0..64 {
        let app = app.clone();
        clients.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for _ in 0..4 {
                let reply = app.order(&format!("c-{c}"), &[("hot", 1)]).await;
                outcomes.push((reply.status, reply.code().to_owned()));
            }
            outcomes
        }));
    }
    let mut accepted = 0;
    for client in clients {
        for (status, code) in client.await.unwrap() {
            match status {
                201 => accepted += 1,
                409 => assert_eq!(code, "out_of_stock"),
                other => panic!("unexpected status {other} ({code})"),
            }
        }
    }
    assert_eq!(accepted, 100);
    assert_eq!(app.available("hot").await, 0);
}

#[tokio::test]
async fn a_restart_neither_oversells_nor_strands_units() {
    let app = spawn_app().await;
    app.put_product("a", "1.00", 10).await;
    app.put_product("b", "1.00", 5).await;
    assert_eq!(app.order("c", &[("a", 4), ("b", 5)]).await.status, 201);
    assert_eq!(app.order("c", &[("a", 1)]).await.status, 201);
    let dir = app.stop().await;

    let app = spawn_app_in(dir, |_| {}).await;
    assert_eq!(app.available("a").await, 5);
    assert_eq!(app.available("b").await, 0);
    assert_eq!(app.order("c", &[("b", 1)]).await.code(), "out_of_stock");
    assert_eq!(app.order("c", &[("a", 5)]).await.status, 201);
    assert_eq!(app.order("c", &[("a", 1)]).await.code(), "out_of_stock");
}

#[tokio::test]
async fn a_batch_is_answered_per_order_and_committed_together() {
    let app = spawn_app().await;
    app.put_product("a", "2.00", 600).await;
    let mut orders: Vec<_> = (0..600).map(|i| order_body(&format!("c-{i}"), &[("a", 1)])).collect();
    orders.push(order_body("late", &[("a", 1)])); // sold out by then
    orders.push(json!({"customer_id": "", "items": [{"sku": "a", "quantity": 1}]}));
    orders.push(json!({"customer_id": "k", "items": [{"sku": "a", "quantity": 1}], "idempotency_key": "b-1"}));
    let reply = app.post("/api/orders/batch", &json!({"orders": orders})).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    assert_eq!(reply.body["accepted"], 600);
    assert_eq!(reply.body["rejected"], 3);
    let results = reply.body["results"].as_array().unwrap();
    assert_eq!(results.len(), 603);
    assert!(results[..600].iter().all(|r| r["status"] == 201 && r["order"]["total"] == "2.00"));
    assert_eq!(results[600]["error"]["code"], "out_of_stock");
    assert_eq!(results[601]["error"]["code"], "invalid_customer_id");
    assert_eq!(results[602]["error"]["code"], "out_of_stock");
    let id = results[0]["order"]["order_id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/api/orders/{id}")).await.status, 200);
    assert_eq!(app.available("a").await, 0);
}

#[tokio::test]
async fn batch_orders_honour_their_idempotency_keys() {
    let app = spawn_app().await;
    app.put_product("a", "2.00", 10).await;
    let batch = json!({"orders": [
        {"customer_id": "k", "items": [{"sku": "a", "quantity": 2}], "idempotency_key": "b-1"},
        {"customer_id": "k", "items": [{"sku": "a", "quantity": 2}], "idempotency_key": "b-1"},
    ]});
    let first = app.post("/api/orders/batch", &batch).await;
    assert_eq!(first.body["accepted"], 1);
    assert_eq!(first.body["results"][1]["error"]["code"], "idempotency_key_in_use");
    let again = app.post("/api/orders/batch", &batch).await;
    assert_eq!(again.body["results"][0]["replayed"], true);
    assert_eq!(again.body["results"][0]["order"], first.body["results"][0]["order"]);
    assert_eq!(app.available("a").await, 8);
}

#[tokio::test]
async fn a_batch_on_a_node_that_never_saw_its_keys_replays_the_stored_ones() {
    let keyed =
        |customer: &str, key: &str, quantity: i64| keyed_batch_order(customer, "a", quantity, key);
    let app = spawn_app().await;
    app.put_product("a", "2.00", 10).await;
    let earlier = json!({"orders": [keyed("k", "s-1", 1), keyed("k", "s-2", 1)]});
    let first = app.post("/api/orders/batch", &earlier).await;
    assert_eq!(first.body["accepted"], 2, "{:?}", first.body);
    let dir = app.stop().await;

    let app = spawn_app_in(dir, |_| {}).await;
    let retried = json!({"orders": [
        keyed("k", "s-1", 1),
        keyed("k", "s-2", 3),
        keyed("k", "s-3", 1),
        keyed("someone-else", "s-1", 1),
    ]});
    let again = app.post("/api/orders/batch", &retried).await;
    let results = again.body["results"].as_array().unwrap();
    let statuses: Vec<_> = results.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [201, 422, 201, 201], "{:?}", again.body);
    assert_eq!(results[0]["replayed"], true);
    assert_eq!(results[0]["order"], first.body["results"][0]["order"]);
    assert_eq!(results[1]["error"]["code"], "idempotency_key_reused");
    assert_eq!(app.available("a").await, 6, "the replayed order's unit taken once");
    assert_eq!(app.count("SELECT count(*) FROM orders"), 4);
}

#[tokio::test]
async fn lowering_stock_below_what_orders_hold_is_refused() {
    // No inventory consumer: accepted orders keep holding their units.
    let app = spawn_app_in(tempfile::tempdir().unwrap(), |s| {
        s.topology.0.retain(|b| b.queue != "inventory");
    })
    .await;
    app.put_product("a", "1.00", 10).await;
    app.order("c", &[("a", 6)]).await;
    let reply = app.put_product("a", "1.00", 5).await;
    assert_eq!((reply.status, reply.code()), (409, "stock_below_held"));
    assert!(
        reply.body["error"]["message"].as_str().unwrap().contains("6 units held"),
        "{:?}",
        reply.body
    );
    assert_eq!(app.available("a").await, 4);
    let raised = app.put_product("a", "1.50", 20).await;
    assert_eq!(raised.status, 200);
    assert_eq!(raised.body["stock_available"], 14);
    assert_eq!(raised.body["price"], "1.50");
    assert_eq!(app.order("c", &[("a", 1)]).await.body["total"], "1.50", "new price applies");
}

#[tokio::test]
async fn setting_stock_after_deductions_sets_what_is_on_hand() {
    let app = spawn_app().await;
    app.put_product("a", "1.00", 10).await;
    let placed = app.order("c", &[("a", 6)]).await;
    app.wait_for_status(placed.body["order_id"].as_str().unwrap(), "confirmed").await;
    assert_eq!(app.product("a").await["stock"], 4, "6 units left the shelf");
    let restocked = app.put_product("a", "1.00", 5).await;
    assert_eq!(
        (restocked.body["stock"].as_i64(), restocked.body["stock_available"].as_i64()),
        (Some(5), Some(5))
    );
}

#[tokio::test]
async fn a_failed_commit_answers_503_and_releases_the_reservation() {
    let app = spawn_app().await;
    app.put_product("a", "1.00", 10).await;
    app.put_product("b", "1.00", 10).await;
    // Break the store under the running app: the product row of `b` disappears, so the
    // commit's held-stock update finds no row and the transaction rolls back.
    let db = rusqlite::Connection::open(app.dir.path().join("ordermill.db")).unwrap();
    db.execute("DELETE FROM products WHERE sku = 'b'", []).unwrap();

    let reply = app.order("c", &[("a", 3), ("b", 2)]).await;
    assert_eq!((reply.status, reply.code()), (503, "store_unavailable"));
    assert!(reply.headers.contains_key("retry-after"));
    assert_eq!(app.available("a").await, 10, "reservation released (b's row is gone, so a tells)");
    let orders: i64 = db.query_row("SELECT count(*) FROM orders", [], |r| r.get(0)).unwrap();
    assert_eq!(orders, 0, "nothing half-written");
    assert_eq!(app.order("c", &[("a", 3)]).await.status, 201, "the next batch commits");
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.body["status"], "ok");
    assert_eq!(app.get("/readyz").await.body["status"], "ready");
}

#[tokio::test]
async fn metrics_count_accepted_rejected_and_shed_orders() {
    let app = spawn_app().await;
    app.put_product("m", "1.00", 1).await;
    app.order("c", &[("m", 1)]).await;
    app.order("c", &[("m", 1)]).await;
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(text.contains("ordermill_orders_accepted_total"), "{text}");
    assert!(text.contains(r#"ordermill_orders_rejected_total{reason="out_of_stock"}"#), "{text}");
    assert!(text.contains("ordermill_commit_batch_orders_bucket"), "{text}");
    // Both shed causes are exported before any shed, so a rate over them is 0, not absent.
    for cause in ["backlog", "slow_commit"] {
        let series = format!(r#"ordermill_orders_shed_total{{cause="{cause}"}} 0"#);
        assert!(text.contains(&series), "{series} missing: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lingering_commit_waits_for_no_one_once_every_order_has_reached_it() {
    // `commit.linger` waits only for orders still on their way to the commit (reserving their
    // stock): a burst of concurrent orders is answered at once, not a linger later.
    let linger = std::time::Duration::from_secs(3);
    let app = spawn_app_in(tempfile::tempdir().unwrap(), |s| {
        s.commit.linger =
            ordermill_core::HumanDuration::from_millis(linger.as_millis().try_into().unwrap());
    })
    .await;
    assert_eq!(app.put_product("sku-1", "1.00", 100).await.status, 201);
    let app = std::sync::Arc::new(app);

    let started = std::time::Instant::now();
    let mut orders = tokio::task::JoinSet::new();
    for i in 0..16 {
        let app = app.clone();
        orders.spawn(async move { app.order(&format!("c-{i}"), &[("sku-1", 1)]).await.status });
    }
    while let Some(status) = orders.join_next().await {
        assert_eq!(status.unwrap(), 201);
    }
    let took = started.elapsed();
    assert!(took < linger / 2, "16 orders took {took:?}: a commit lingered for no one");
}
