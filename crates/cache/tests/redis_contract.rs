//! The Redis backend passes the stock-cache contract against the real Redis named by
//! `ORDERMILL_TEST_REDIS_URL` (each run under its own key prefix). Unset: the test says why it
//! skips — unless `ORDERMILL_TEST_REQUIRE_SERVICES=1` (CI), where a skip is a failure.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;

use ordermill_cache::{RedisStockCache, contract};

fn redis_url() -> Option<String> {
    ordermill_cache::contract::service_url("ORDERMILL_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cache_honours_the_stock_contract() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("ordermill-test-{}", uuid::Uuid::now_v7());
    let cache = RedisStockCache::connect(&url, &prefix).await.unwrap();
    contract::run_all(Arc::new(cache)).await;
}

#[tokio::test]
async fn two_nodes_share_one_stock() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("ordermill-test-{}", uuid::Uuid::now_v7());
    let a = RedisStockCache::connect(&url, &prefix).await.unwrap();
    let b = RedisStockCache::connect(&url, &prefix).await.unwrap();
    use ordermill_core::ports::StockCache;
    let sku = ordermill_core::Sku::parse("shared").unwrap();
    a.set_available(&sku, 3).await.unwrap();
    assert_eq!(b.available(&sku).await.unwrap(), Some(3));
    assert_eq!(b.adjust(&sku, -2).await.unwrap(), 1);
    assert_eq!(a.available(&sku).await.unwrap(), Some(1));
}

#[tokio::test]
async fn an_unreachable_redis_is_reported_as_unavailable() {
    let err = RedisStockCache::connect("redis://127.0.0.1:1", "x").await.unwrap_err();
    assert!(matches!(err, ordermill_core::ports::CacheError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn the_first_api_node_resets_counts_and_later_ones_keep_live_counts() {
    use ordermill_core::ports::StockCache;
    use std::time::{Duration, Instant};
    let Some(url) = redis_url() else { return };
    let prefix = format!("ordermill-test-{}", uuid::Uuid::now_v7());
    let cache = RedisStockCache::connect(&url, &prefix).await.unwrap();
    let sku = ordermill_core::Sku::parse("s").unwrap();
    let counts = [(sku.clone(), 10)];
    let long = Duration::from_secs(60);
    // A stale count, as a node that crashed between reserving and committing leaves it.
    cache.set_available(&sku, 7).await.unwrap();
    assert!(cache.join_shared("a", &counts, long).await.unwrap(), "alone: reset");
    assert_eq!(cache.available(&sku).await.unwrap(), Some(10), "stranded units freed");
    cache.adjust(&sku, -2).await.unwrap(); // a's reservation in flight
    assert!(!cache.join_shared("b", &counts, long).await.unwrap(), "a is live: no reset");
    assert_eq!(cache.available(&sku).await.unwrap(), Some(8), "a's live count kept");
    cache.leave("a").await.unwrap();
    cache.leave("b").await.unwrap();
    assert!(cache.join_shared("c", &counts, long).await.unwrap(), "everyone left: reset");
    cache.leave("c").await.unwrap();

    // A node that stops heart-beating (killed) stops counting once its ttl runs out.
    assert!(cache.join_shared("d", &counts, Duration::from_millis(200)).await.unwrap());
    cache.heartbeat("d", Duration::from_millis(200)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if cache.join_shared("e", &counts, long).await.unwrap() {
            break;
        }
        cache.leave("e").await.unwrap();
        assert!(Instant::now() < deadline, "d never lapsed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redis_order_cache_honours_the_read_cache_contract() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("ordermill-test-{}", uuid::Uuid::now_v7());
    let cache = RedisStockCache::connect(&url, &prefix).await.unwrap();
    let orders = cache.order_cache(std::time::Duration::from_millis(200));
    contract::run_read_cache(Arc::new(orders)).await;
}
