//! The local backend passes the stock-cache contract.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;

use ordermill_cache::{LocalStockCache, contract};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_cache_honours_the_stock_contract() {
    contract::run_all(Arc::new(LocalStockCache::new())).await;
}

#[tokio::test]
async fn local_order_cache_honours_the_read_cache_contract() {
    let ttl = std::time::Duration::from_millis(200);
    ordermill_cache::contract::run_read_cache(std::sync::Arc::new(
        ordermill_cache::LocalOrderCache::new(100, ttl),
    ))
    .await;
}

#[tokio::test]
async fn local_rate_limiter_honours_the_budget_contract() {
    let limiter = ordermill_cache::LocalRateLimiter::new(contract::rate_limiter_quota());
    contract::run_rate_limiter(&limiter).await;
    assert_eq!(limiter.len(), 2);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    limiter.forget_idle();
    assert!(limiter.is_empty(), "full buckets are dropped: memory follows recent clients");
}
