//! The same intake guarantees with the hot stock in the real Redis named by
//! `ORDERMILL_TEST_REDIS_URL` (a key prefix per test). Unset: the tests say why they skip —
//! unless `ORDERMILL_TEST_REQUIRE_SERVICES=1` (CI), where a skip is a failure.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod support;

use std::sync::Arc;
use std::time::Duration;

use support::{TestApp, spawn_app_in};

fn redis_url() -> Option<String> {
    ordermill_cache::contract::service_url("ORDERMILL_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

async fn app_on_redis(url: &str, prefix: &str, dir: tempfile::TempDir) -> TestApp {
    let (url, prefix) = (url.to_owned(), prefix.to_owned());
    spawn_app_in(dir, move |s| {
        s.cache = url.parse().expect("a redis:// URL");
        s.redis.key_prefix = prefix;
        s.workers.retry_base = ordermill_core::HumanDuration::from_millis(10);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_get_exactly_100_units_from_redis_and_a_restart_reconciles() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("ordermill-test-{}", uuid::Uuid::now_v7());
    let app = Arc::new(app_on_redis(&url, &prefix, tempfile::tempdir().unwrap()).await);
    app.put_product("hot", "9.90", 100).await;
    let mut clients = Vec::new();
    for c in 0..64 {
        let app = app.clone();
        clients.push(tokio::spawn(async move {
            let mut won = 0;
            for _ in 0..4 {
                let reply = app.order(&format!("c-{c}"), &[("hot", 1)]).await;
                match reply.status {
                    201 => won += 1,
                    409 => assert_eq!(reply.code(), "out_of_stock"),
                    other => panic!("unexpected {other}: {:?}", reply.body),
                }
            }
            won
        }));
    }
    let mut accepted = 0;
    for client in clients {
        accepted += client.await.unwrap();
    }
    assert_eq!(accepted, 100);
    assert_eq!(app.available("hot").await, 0);

    let app = Arc::into_inner(app).expect("no client holds the app any more");
    let dir = app.stop().await;
    // Damage the shared counter while the node is down: the restart must rebuild it from the
    // store, not trust it.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SET")
        .arg(format!("{{{prefix}}}:stock:hot"))
        .arg(50)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();
    let app = app_on_redis(&url, &prefix, dir).await;
    assert_eq!(app.available("hot").await, 0);
    assert_eq!(app.order("late", &[("hot", 1)]).await.code(), "out_of_stock");
}

#[tokio::test]
async fn a_declined_payment_gives_the_units_back_in_redis() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("ordermill-test-{}", uuid::Uuid::now_v7());
    let app = app_on_redis(&url, &prefix, tempfile::tempdir().unwrap()).await;
    app.put_product("a", "5.00", 10).await;
    let placed = app.order("test-decline", &[("a", 4)]).await;
    app.wait_for_status(placed.body["order_id"].as_str().unwrap(), "cancelled").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.available("a").await != 10 {
        assert!(std::time::Instant::now() < deadline, "units never came back");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An app on Redis whose watchdog checks the counts every 50 ms and rebuilds lost ones after
/// `settle`.
async fn app_repairing_redis(url: &str, prefix: &str, settle: Duration) -> TestApp {
    let (url, prefix) = (url.to_owned(), prefix.to_owned());
    spawn_app_in(tempfile::tempdir().unwrap(), move |s| {
        s.cache = url.parse().expect("a redis:// URL");
        s.redis.key_prefix = prefix;
        s.redis.check_interval = ordermill_core::HumanDuration::from_millis(50);
        s.redis.rebuild_settle = ordermill_core::HumanDuration(settle);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_counts_make_the_node_unready_and_503_until_rebuilt_never_sold_out() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("ordermill-test-{}", uuid::Uuid::now_v7());
    // Long enough for the checks below to see the node before the rebuild.
    let app = app_repairing_redis(&url, &prefix, Duration::from_secs(3)).await;
    app.put_product("a", "5.00", 10).await;
    assert_eq!(app.order("c-1", &[("a", 2)]).await.status, 201);
    assert_eq!(app.get("/readyz").await.body["stock"], "ok");

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{{{prefix}}}:*")).query_async(&mut conn).await.unwrap();
    redis::cmd("DEL").arg(&keys).query_async::<i64>(&mut conn).await.unwrap();

    let refused = app.order("c-2", &[("a", 1)]).await;
    assert_eq!((refused.status, refused.code()), (503, "unavailable"), "{:?}", refused.body);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 503, "{:?}", ready.body);
    assert!(ready.body["error"]["message"].as_str().unwrap().contains("being rebuilt"));

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while app.get("/readyz").await.status != 200 {
        assert!(std::time::Instant::now() < deadline, "the counts were never rebuilt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(app.available("a").await, 8, "rebuilt as stock − reserved, from the store");
    assert_eq!(app.order("c-2", &[("a", 1)]).await.status, 201, "selling again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_count_too_high_cannot_oversell_the_store_refuses_and_the_counts_heal() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("ordermill-test-{}", uuid::Uuid::now_v7());
    let app = app_repairing_redis(&url, &prefix, Duration::from_millis(200)).await;
    app.put_product("b", "5.00", 3).await;
    // A count that drifted up (a bug, a hand edit): the cache would grant 100 units.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SET")
        .arg(format!("{{{prefix}}}:stock:b"))
        .arg(100)
        .query_async::<()>(&mut conn)
        .await
        .unwrap();

    let refused = app.order("c-1", &[("b", 5)]).await;
    assert_eq!((refused.status, refused.code()), (409, "out_of_stock"), "{:?}", refused.body);
    let held = app.count("SELECT reserved FROM products WHERE sku = 'b'");
    assert_eq!(held, 0, "the store held nothing beyond its stock of 3");
    assert_eq!(app.count("SELECT count(*) FROM orders"), 0);

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while app.available("b").await != 3 {
        assert!(std::time::Instant::now() < deadline, "the wrong count was never rebuilt");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let bought = loop {
        let reply = app.order("c-2", &[("b", 3)]).await;
        if reply.status != 503 {
            break reply;
        }
        assert!(std::time::Instant::now() < deadline, "still rebuilding after 15 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(bought.status, 201, "{:?}", bought.body);
    assert_eq!(app.order("c-3", &[("b", 1)]).await.code(), "out_of_stock");
}

/// What every node with a Redis cache runs on: the cache wrapped so that a release that fails
/// ends in a rebuild (`services/unreturned.rs`). The wrapper must hand every call to Redis, the
/// ones with a default in the port included: it passes the same contract Redis passes alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wrapped_redis_cache_honours_the_stock_contract() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("ordermill-test-{}", uuid::Uuid::now_v7());
    let redis = ordermill_cache::RedisStockCache::connect(&url, &prefix).await.unwrap();
    let wrapped = ordermill_server::services::unreturned::ReturnsOwed::wrap(
        Arc::new(redis),
        Duration::from_secs(1),
    );
    ordermill_cache::contract::run_all(wrapped.clone()).await;
    assert!(!wrapped.owes(), "no release failed");
}
