//! Group buying and flash-sale limits on the real app: a group completes and its orders are
//! confirmed; expiry cancels and gives stock back; concurrent joins for the last slots; a
//! deadline pending across a restart fires once; per-customer limits under concurrency.
//!
//! Every scenario runs twice: on the embedded engines (`<name>::embedded`) and on the real
//! PostgreSQL, RabbitMQ and Redis (`<name>::scaled_out`, skipped with a reason when their
//! `ORDERMILL_TEST_*_URL` variables are unset).

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

#[macro_use]
mod support;

use std::sync::Arc;
use std::time::Duration;

use ordermill_core::{Clock, ManualClock, SystemClock};
use serde_json::{Value, json};
use support::{Engines, Reply, TestApp, eventually, spawn_app_on};

on_both_engines!(
    a_filled_group_completes_and_every_member_is_confirmed_and_charged_once,
    an_expired_group_cancels_its_orders_and_gives_the_stock_back,
    fifty_concurrent_joins_on_a_deal_of_three_admit_exactly_three,
    a_deadline_pending_across_a_restart_fires_once,
    a_per_customer_limit_holds_under_concurrency_for_orders_and_joins,
    a_restart_remembers_what_each_customer_holds,
    deal_requests_are_validated_and_joins_are_idempotent,
);

async fn app_on(engines: &Engines, clock: Arc<ManualClock>) -> TestApp {
    app_in(engines, tempfile::tempdir().unwrap(), clock).await
}

async fn app_in(engines: &Engines, dir: tempfile::TempDir, clock: Arc<ManualClock>) -> TestApp {
    spawn_app_on(engines.clone(), dir, clock, |s| {
        s.deals.check_interval = ordermill_core::HumanDuration::from_millis(20);
        s.workers.retry_base = ordermill_core::HumanDuration::from_millis(10);
        s.workers.retry_max = ordermill_core::HumanDuration::from_millis(50);
    })
    .await
}

fn now_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(SystemClock.now()))
}

async fn open_deal(app: &TestApp, sku: &str, size: i64, expires_in: &str) -> String {
    let reply = app
        .post(
            "/api/deals",
            &json!({"sku": sku, "deal_price": "9.90", "group_size": size, "expires_in": expires_in}),
        )
        .await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    reply.body["deal_id"].as_str().unwrap().to_owned()
}

async fn join(app: &TestApp, deal: &str, customer: &str) -> Reply {
    app.post(&format!("/api/deals/{deal}/join"), &json!({"customer_id": customer})).await
}

async fn deal(app: &TestApp, id: &str) -> Value {
    let reply = app.get(&format!("/api/deals/{id}")).await;
    assert_eq!(reply.status, 200, "{:?}", reply.body);
    reply.body
}

fn statuses(order: &Value) -> Vec<&str> {
    order["history"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect()
}

async fn a_filled_group_completes_and_every_member_is_confirmed_and_charged_once(engines: Engines) {
    let app = app_on(&engines, now_clock()).await;
    app.put_product("crab", "19.99", 10).await;
    let id = open_deal(&app, "crab", 3, "15m").await;
    let opened = deal(&app, &id).await;
    assert_eq!(opened["status"], "open");
    assert_eq!(opened["time_left_ms"], 900_000);
    assert_eq!(opened["time_left"], "15m");

    let mut orders = Vec::new();
    for customer in ["ann", "bob", "cy"] {
        let reply = join(&app, &id, customer).await;
        assert_eq!(reply.status, 201, "{:?}", reply.body);
        assert_eq!(reply.body["status"], "awaiting_group");
        assert_eq!(reply.body["total"], "9.90", "the deal price, not the catalog's");
        assert_eq!(reply.body["deal_id"], id.as_str());
        orders.push(reply.body["order_id"].as_str().unwrap().to_owned());
    }
    let done = deal(&app, &id).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["member_count"].as_u64().unwrap() as usize, 3);
    assert_eq!(done["slots_left"], 0);
    for order in &orders {
        let confirmed = app.wait_for_status(order, "confirmed").await;
        assert_eq!(statuses(&confirmed), ["awaiting_group", "accepted", "confirmed"]);
    }
    eventually("stock of record deducted", || async { app.product("crab").await["stock"] == 7 })
        .await;
    assert_eq!(app.available("crab").await, 7);
    assert_eq!(app.count_rows("SELECT count(*) FROM payments WHERE status = 'succeeded'").await, 3);
    let late = join(&app, &id, "dee").await;
    assert_eq!((late.status, late.code()), (409, "deal_full"));
    let metrics = app.get_text("/metrics").await;
    assert!(metrics.contains("ordermill_deals_completed_total"), "{metrics}");
    app.stop().await;
}

async fn an_expired_group_cancels_its_orders_and_gives_the_stock_back(engines: Engines) {
    let clock = now_clock();
    let app = app_on(&engines, clock.clone()).await;
    app.put_product("cake", "8.80", 10).await;
    let id = open_deal(&app, "cake", 3, "15m").await;
    let a = join(&app, &id, "ann").await;
    let b = join(&app, &id, "bob").await;
    assert_eq!((a.status, b.status), (201, 201));
    assert_eq!(app.available("cake").await, 8);
    // Let inventory deduct stock of record first, so expiry must restore it, not just unhold.
    eventually("stock deducted", || async { app.product("cake").await["stock"] == 8 }).await;

    clock.advance(Duration::from_secs(15 * 60));
    eventually("deal expired", || async { deal(&app, &id).await["status"] == "expired" }).await;
    for reply in [&a, &b] {
        let order =
            app.wait_for_status(reply.body["order_id"].as_str().unwrap(), "cancelled").await;
        assert_eq!(statuses(&order), ["awaiting_group", "cancelled"]);
    }
    eventually("stock given back in store and cache", || async {
        let p = app.product("cake").await;
        p["stock"] == 10 && p["stock_available"] == 10
    })
    .await;
    assert_eq!(
        app.count_rows("SELECT count(*) FROM payments").await,
        0,
        "an expired group is never charged"
    );
    let late = join(&app, &id, "cy").await;
    assert_eq!((late.status, late.code()), (409, "deal_expired"));
    assert_eq!(deal(&app, &id).await["time_left_ms"], 0);
    app.stop().await;
}

async fn fifty_concurrent_joins_on_a_deal_of_three_admit_exactly_three(engines: Engines) {
    let app = Arc::new(app_on(&engines, now_clock()).await);
    app.put_product("hot", "5.00", 100).await;
    let id = open_deal(&app, "hot", 3, "1h").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let (app, id) = (app.clone(), id.clone());
        tasks.spawn(async move { join(&app, &id, &format!("buyer-{i}")).await });
    }
    let mut won = 0;
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.unwrap();
        match reply.status {
            201 => won += 1,
            409 => assert_eq!(reply.code(), "deal_full", "{:?}", reply.body),
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    assert_eq!(won, 3);
    let done = deal(&app, &id).await;
    assert_eq!(
        (done["status"].as_str(), done["member_count"].as_u64().unwrap() as usize),
        (Some("completed"), 3)
    );
    // The 47 losers' reservations came back: only the members hold units.
    assert_eq!(app.available("hot").await, 97);
    assert_eq!(app.count_rows("SELECT count(*) FROM orders").await, 3);
    stop(app).await;
}

/// Stops an app shared with client tasks (they have all finished).
async fn stop(app: Arc<TestApp>) {
    let Ok(app) = Arc::try_unwrap(app) else { panic!("a client task still holds the app") };
    app.stop().await;
}

async fn a_deadline_pending_across_a_restart_fires_once(engines: Engines) {
    let clock = now_clock();
    let app = app_on(&engines, clock.clone()).await;
    app.put_product("tea", "3.00", 5).await;
    let id = open_deal(&app, "tea", 2, "10m").await;
    let member = join(&app, &id, "ann").await;
    let order_id = member.body["order_id"].as_str().unwrap().to_owned();
    let dir = app.stop().await;

    // The deadline passes while the node is down.
    clock.advance(Duration::from_secs(11 * 60));
    let app = app_in(&engines, dir, clock.clone()).await;
    eventually("deal expired after restart", || async {
        deal(&app, &id).await["status"] == "expired"
    })
    .await;
    app.wait_for_status(&order_id, "cancelled").await;
    eventually("units back", || async { app.available("tea").await == 5 }).await;
    let dir = app.stop().await;

    // A second restart finds nothing left to fire.
    let app = app_in(&engines, dir, clock).await;
    let settled = "SELECT count(*) FROM processed_events WHERE consumer IN ('inventory', 'notify')";
    eventually("inventory and notify settled", || async { app.count_rows(settled).await >= 4 })
        .await;
    let order = app.get(&format!("/api/orders/{order_id}")).await.body;
    assert_eq!(statuses(&order), ["awaiting_group", "cancelled"], "cancelled once");
    let expired_events =
        app.count_rows("SELECT count(*) FROM processed_events WHERE consumer = 'inventory'").await;
    assert_eq!(expired_events, 2, "inventory saw deal.joined and ONE deal.expired");
    assert_eq!(
        app.count_rows("SELECT count(*) FROM processed_events WHERE consumer = 'notify'").await,
        2
    );
    assert_eq!(app.available("tea").await, 5);
    assert_eq!(app.product("tea").await["stock"], 5);
    app.stop().await;
}

async fn a_per_customer_limit_holds_under_concurrency_for_orders_and_joins(engines: Engines) {
    let app = Arc::new(app_on(&engines, now_clock()).await);
    let put = app
        .send(app.client.put(app.url("/api/products/flash")).json(
            &json!({"name": "Flash", "price": "1.00", "stock": 100, "per_customer_limit": 1}),
        ))
        .await;
    assert_eq!((put.status, &put.body["per_customer_limit"]), (201, &json!(1)));

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let app = app.clone();
        tasks.spawn(async move { app.order("greedy", &[("flash", 1)]).await });
    }
    let mut won = 0;
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.unwrap();
        match reply.status {
            201 => won += 1,
            409 => assert_eq!(reply.code(), "limit_exceeded", "{:?}", reply.body),
            other => panic!("unexpected {other}: {:?}", reply.body),
        }
    }
    assert_eq!(won, 1, "one unit per customer, however many requests race");
    assert_eq!(app.order("modest", &[("flash", 1)]).await.status, 201);
    assert_eq!(app.order("other", &[("flash", 2)]).await.code(), "limit_exceeded");

    // Deal joins count against the same limit.
    let id = open_deal(&app, "flash", 5, "1h").await;
    let refused = join(&app, &id, "greedy").await;
    assert_eq!((refused.status, refused.code()), (409, "limit_exceeded"));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (app, id) = (app.clone(), id.clone());
        tasks.spawn(async move { join(&app, &id, "joiner").await });
    }
    let mut joined = 0;
    while let Some(reply) = tasks.join_next().await {
        let reply = reply.unwrap();
        if reply.status == 201 {
            joined += 1;
        } else {
            assert!(
                ["limit_exceeded", "already_joined"].contains(&reply.code()),
                "{:?}",
                reply.body
            );
        }
    }
    assert_eq!(joined, 1);
    assert_eq!(app.available("flash").await, 100 - 3);

    // A cancelled order no longer counts: a declined customer may try again.
    let declined = app.order("test-decline", &[("flash", 1)]).await;
    app.wait_for_status(declined.body["order_id"].as_str().unwrap(), "cancelled").await;
    assert_eq!(app.order("test-decline", &[("flash", 1)]).await.status, 201);
    stop(app).await;
}

async fn a_restart_remembers_what_each_customer_holds(engines: Engines) {
    let app = app_on(&engines, now_clock()).await;
    let body = json!({"name": "Flash", "price": "1.00", "stock": 10, "per_customer_limit": 2});
    app.send(app.client.put(app.url("/api/products/lim")).json(&body)).await;
    assert_eq!(app.order("c", &[("lim", 2)]).await.status, 201);
    let app = app_in(&engines, app.stop().await, now_clock()).await;
    assert_eq!(app.order("c", &[("lim", 1)]).await.code(), "limit_exceeded");
    assert_eq!(app.product("lim").await["per_customer_limit"], 2);
    // Sending the product without the field keeps the limit; null removes it.
    let keep = json!({"name": "Flash", "price": "1.00", "stock": 10});
    let reply = app.send(app.client.put(app.url("/api/products/lim")).json(&keep)).await;
    assert_eq!(reply.body["per_customer_limit"], 2);
    let lift = json!({"name": "Flash", "price": "1.00", "stock": 10, "per_customer_limit": null});
    let reply = app.send(app.client.put(app.url("/api/products/lim")).json(&lift)).await;
    assert_eq!(reply.body["per_customer_limit"], Value::Null);
    assert_eq!(app.order("c", &[("lim", 1)]).await.status, 201);
    app.stop().await;
}

async fn deal_requests_are_validated_and_joins_are_idempotent(engines: Engines) {
    let app = app_on(&engines, now_clock()).await;
    app.put_product("s", "2.00", 10).await;
    let cases = [
        (
            json!({"sku": "s", "deal_price": "1.00", "group_size": 1, "expires_in": "1h"}),
            "invalid_group_size",
        ),
        (
            json!({"sku": "s", "deal_price": 1.0, "group_size": 3, "expires_in": "1h"}),
            "invalid_price",
        ),
        (json!({"sku": "s", "deal_price": "1.00", "group_size": 3}), "invalid_expiry"),
        (
            json!({"sku": "s", "deal_price": "1.00", "group_size": 3, "expires_in": "soon"}),
            "invalid_expiry",
        ),
        (
            json!({"sku": "s", "deal_price": "1.00", "group_size": 3, "expires_in": "1h", "expires_at": "2030-01-01T00:00:00Z"}),
            "invalid_expiry",
        ),
        (
            json!({"sku": "s", "deal_price": "1.00", "group_size": 3, "expires_at": "2001-01-01T00:00:00Z"}),
            "invalid_expiry",
        ),
        (
            json!({"sku": "nope", "deal_price": "1.00", "group_size": 3, "expires_in": "1h"}),
            "unknown_sku",
        ),
        (
            json!({"sku": "s", "deal_price": "1.00", "group_size": 3, "expires_in": "1h", "x": 1}),
            "invalid_request",
        ),
    ];
    for (body, code) in cases {
        let reply = app.post("/api/deals", &body).await;
        assert_eq!((reply.status, reply.code()), (422, code), "{body}");
    }
    assert_eq!(app.get("/api/deals/not-a-uuid").await.code(), "invalid_deal_id");
    let missing = app.get("/api/deals/0193a1b2-0000-7000-8000-000000000000").await;
    assert_eq!((missing.status, missing.code()), (404, "deal_not_found"));

    let id = open_deal(&app, "s", 3, "1h").await;
    let bad = app.post(&format!("/api/deals/{id}/join"), &json!({"customer_id": ""})).await;
    assert_eq!((bad.status, bad.code()), (422, "invalid_customer_id"));
    let keyed = |customer: &str| {
        app.client
            .post(app.url(&format!("/api/deals/{id}/join")))
            .header("Idempotency-Key", "join-1")
            .json(&json!({"customer_id": customer}))
    };
    let first = app.send(keyed("ann")).await;
    let again = app.send(keyed("ann")).await;
    assert_eq!((first.status, again.status), (201, 201));
    assert_eq!(first.body["order_id"], again.body["order_id"]);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    // Keys are per customer: bob's "join-1" is his own request, not a reuse of ann's.
    let bob = app.send(keyed("bob")).await;
    assert_eq!(bob.status, 201, "{:?}", bob.body);
    assert_ne!(bob.body["order_id"], first.body["order_id"]);
    let twice = join(&app, &id, "ann").await;
    assert_eq!((twice.status, twice.code()), (409, "already_joined"));
    assert_eq!(deal(&app, &id).await["member_count"].as_u64().unwrap() as usize, 2);
    app.stop().await;
}

/// A join whose reply never comes (its COMMIT held on PostgreSQL past the api's 1 s deadline,
/// by a deferred trigger waiting on a row the test locks) is read back before anything is
/// given back: once the commit lands, the customer is answered as a member and the unit stays
/// held. A join cut off before it wrote anything (the deal's row locked) reads back as absent:
/// answered 503, its unit back on sale.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_whose_reply_is_lost_is_read_back_before_its_unit_is_given_back() {
    let Some(engines) = Engines::scaled() else { return };
    engines.prepare().await;
    let support::Engines::ScaledOut(scaled) = &engines else { unreachable!("scaled() is scaled") };
    let app = spawn_app_on(engines.clone(), tempfile::tempdir().unwrap(), now_clock(), |s| {
        s.postgres.query_timeout = ordermill_core::HumanDuration::from_secs(1);
    })
    .await;
    app.put_product("crab", "19.99", 10).await;
    let id = open_deal(&app, "crab", 3, "1h").await;

    let mut holder = {
        use sqlx::Connection;
        sqlx::PgConnection::connect(&scaled.postgres).await.unwrap()
    };
    // The schema's name is the test's own uuid-based identifier.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        r#"SET search_path TO "{s}";
        CREATE TABLE gate (id int PRIMARY KEY); INSERT INTO gate VALUES (1);
        CREATE FUNCTION pass_gate() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM 1 FROM "{s}".gate WHERE id = 1 FOR UPDATE; RETURN NULL; END $$;
        CREATE CONSTRAINT TRIGGER held_at_commit AFTER INSERT ON deal_members
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION pass_gate();"#,
        s = scaled.name
    )))
    .execute(&mut holder)
    .await
    .unwrap();
    let hold_for_a_while = |lock: &'static str, holder: sqlx::PgConnection| async move {
        let mut holder = holder;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("BEGIN; {lock}")))
            .execute(&mut holder)
            .await
            .unwrap();
        // Past the api's 1 s deadline: the join is cut off, its read-back retries.
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
        holder
    };

    let held = tokio::spawn(hold_for_a_while("SELECT 1 FROM gate FOR UPDATE", holder));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = std::time::Instant::now();
    let ann = join(&app, &id, "ann").await;
    let holder = held.await.unwrap();
    assert_eq!(ann.status, 201, "stored once the held commit landed: {:?}", ann.body);
    assert!(started.elapsed() > Duration::from_secs(1), "the reply was in fact lost");
    assert_eq!(ann.body["status"], "awaiting_group");
    assert_eq!(deal(&app, &id).await["member_count"], 1);
    assert_eq!(app.available("crab").await, 9, "ann's unit stays held");

    let held = tokio::spawn(hold_for_a_while("SELECT 1 FROM deals FOR UPDATE", holder));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let bob = join(&app, &id, "bob").await;
    held.await.unwrap();
    assert_eq!(bob.status, 503, "cut off before it wrote: {:?}", bob.body);
    assert_eq!(deal(&app, &id).await["member_count"], 1);
    assert_eq!(app.available("crab").await, 9, "bob's unit is back on sale");
    assert_eq!(join(&app, &id, "bob").await.status, 201, "and bob can join again");
    assert_eq!(app.available("crab").await, 8);
    app.stop().await;
    engines.clean_up().await;
}
