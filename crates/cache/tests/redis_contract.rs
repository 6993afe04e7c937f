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
