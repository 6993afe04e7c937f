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
    assert!(a.rebuild(None, &[(sku.clone(), 3)]).await.unwrap());
    assert_eq!(b.available(&sku).await.unwrap(), Some(3));
    assert_eq!(b.adjust(&sku, -2).await.unwrap(), 1);
    assert_eq!(a.available(&sku).await.unwrap(), Some(1));
}

#[tokio::test]
async fn orders_reserved_at_once_are_answered_each_on_its_own() {
    use ordermill_core::ports::{CacheError, StockCache};
    use ordermill_core::{Money, OrderLine, Quantity, Sku};
    let Some(url) = redis_url() else { return };
    let prefix = format!("ordermill-test-{}", uuid::Uuid::now_v7());
    let cache = RedisStockCache::connect(&url, &prefix).await.unwrap();
    let (hot, side) = (Sku::parse("m-hot").unwrap(), Sku::parse("m-side").unwrap());
    assert!(cache.rebuild(None, &[(hot.clone(), 3), (side.clone(), 1)]).await.unwrap());
    let line = |sku: &Sku, units: i64| {
        OrderLine::priced(sku.clone(), Quantity::parse(units).unwrap(), Money::ZERO).unwrap()
    };
    let one_hot = [line(&hot, 1)];
    let pair = [line(&side, 1), line(&hot, 1)];
    let second_pair = [line(&side, 1), line(&hot, 1)];
    let unknown = [line(&Sku::parse("m-unknown").unwrap(), 1)];
    // Polled together, so they queue together and go to Redis in one call (or a few): in
    // queue order, an order sees the ones before it.
    let (a, b, c, d, e, f) = tokio::join!(
        cache.reserve(&one_hot),
        cache.reserve(&pair),
        cache.reserve(&unknown),
        cache.reserve(&second_pair),
        cache.reserve(&one_hot),
        cache.reserve(&one_hot),
    );
    let short = |r: Result<ordermill_core::ports::Epoch, CacheError>| match r {
        Err(CacheError::OutOfStock { sku }) => sku.as_str().to_owned(),
        other => panic!("expected out of stock, got {other:?}"),
    };
    assert!(a.is_ok() && b.is_ok() && e.is_ok(), "{a:?} {b:?} {e:?}");
    assert_eq!(short(c), "m-unknown");
    assert_eq!(short(d), "m-side", "the first pair took the one side unit");
    assert_eq!(short(f), "m-hot", "three hot units, three taken before it");
    assert_eq!(cache.available(&hot).await.unwrap(), Some(0));
    assert_eq!(cache.available(&side).await.unwrap(), Some(0));

    cache.mark_lost().await.unwrap();
    let (g, h) = tokio::join!(cache.reserve(&one_hot), cache.reserve(&pair));
    assert!(matches!(g, Err(CacheError::Lost)) && matches!(h, Err(CacheError::Lost)));
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
    assert!(cache.rebuild(None, &[(sku.clone(), 7)]).await.unwrap());
    assert!(cache.join_shared("a", &counts, long).await.unwrap(), "alone: reset");
    assert_eq!(cache.available(&sku).await.unwrap(), Some(10), "stranded units freed");
    cache.adjust(&sku, -2).await.unwrap(); // a's reservation in flight
    assert!(!cache.join_shared("b", &counts, long).await.unwrap(), "a is live: no reset");
    assert_eq!(cache.available(&sku).await.unwrap(), Some(8), "a's live count kept");
    cache.leave("a").await.unwrap();
    cache.leave("b").await.unwrap();
    assert!(cache.join_shared("c", &counts, long).await.unwrap(), "everyone left: reset");
    cache.leave("c").await.unwrap();

    // A node that stops heart-beating (killed) stops counting once its ttl runs out, and the
    // live node that notices marks the counts lost, to be rebuilt with what it had reserved.
    assert!(cache.join_shared("d", &counts, Duration::from_millis(200)).await.unwrap());
    assert_eq!(cache.heartbeat("d", Duration::from_millis(200)).await.unwrap(), 0);
    assert!(!cache.join_shared("live", &counts, long).await.unwrap(), "d is live: no reset");
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.heartbeat("live", long).await.unwrap() == 0 {
        assert!(Instant::now() < deadline, "d's lease never ran out");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!cache.is_whole().await.unwrap(), "a lapsed lease marks the counts for a rebuild");
    assert!(cache.rebuild(None, &counts).await.unwrap());
    cache.leave("live").await.unwrap();
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

#[tokio::test]
async fn lost_counts_are_refused_never_sold_out_and_one_claimed_rebuild_restores_them() {
    use ordermill_core::ports::{CacheError, StockCache};
    use ordermill_core::{Money, OrderLine, Quantity, Sku};
    let Some(url) = redis_url() else { return };
    let prefix = format!("ordermill-test-{}", uuid::Uuid::now_v7());
    let a = RedisStockCache::connect(&url, &prefix).await.unwrap();
    let b = RedisStockCache::connect(&url, &prefix).await.unwrap();
    let sku = Sku::parse("hot").unwrap();
    let line = OrderLine::priced(sku.clone(), Quantity::parse(2).unwrap(), Money::ZERO).unwrap();
    assert!(!a.is_whole().await.unwrap(), "nothing was ever set: not whole");
    assert!(
        a.join_shared("a", &[(sku.clone(), 10)], std::time::Duration::from_secs(60)).await.unwrap()
    );
    a.reserve(std::slice::from_ref(&line)).await.unwrap();

    // Redis loses everything (a restart without persistence, a FLUSHDB).
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{{{prefix}}}:*")).query_async(&mut conn).await.unwrap();
    assert!(!keys.is_empty());
    redis::cmd("DEL").arg(&keys).query_async::<i64>(&mut conn).await.unwrap();

    assert!(!a.is_whole().await.unwrap());
    let err = a.reserve(std::slice::from_ref(&line)).await.unwrap_err();
    assert!(matches!(err, CacheError::Lost), "lost, not out of stock: {err:?}");
    assert!(matches!(a.adjust(&sku, 5).await.unwrap_err(), CacheError::Lost));
    a.release(std::slice::from_ref(&line)).await.unwrap();
    assert_eq!(a.available(&sku).await.unwrap(), None, "a release does not invent a count");
    assert!(
        !a.set_available_if_absent(&sku, 10).await.unwrap(),
        "a refresh leaves it to the rebuild"
    );

    // One node wins the claim; the other's rebuild is refused while it holds it.
    let lease = std::time::Duration::from_secs(30);
    assert!(a.claim_rebuild("a", lease).await.unwrap());
    assert!(!b.claim_rebuild("b", lease).await.unwrap());
    assert!(!b.rebuild(Some("b"), &[(sku.clone(), 99)]).await.unwrap(), "b holds no claim");
    assert!(!b.is_whole().await.unwrap());
    assert!(a.rebuild(Some("a"), &[(sku.clone(), 8)]).await.unwrap());
    assert!(b.is_whole().await.unwrap(), "whole for every node");
    assert_eq!(b.available(&sku).await.unwrap(), Some(8));
    b.reserve(std::slice::from_ref(&line)).await.unwrap();
    assert!(b.claim_rebuild("b", lease).await.unwrap(), "the claim was given up");

    // A node starting while others are live but the counts are lost resets them all.
    redis::cmd("DEL")
        .arg(format!("{{{prefix}}}:epoch"))
        .query_async::<i64>(&mut conn)
        .await
        .unwrap();
    assert!(a.join_shared("c", &[(sku.clone(), 7)], lease).await.unwrap(), "lost: reset");
    assert_eq!(a.available(&sku).await.unwrap(), Some(7));
    let keys: Vec<String> =
        redis::cmd("KEYS").arg(format!("{{{prefix}}}:*")).query_async(&mut conn).await.unwrap();
    redis::cmd("DEL").arg(&keys).query_async::<i64>(&mut conn).await.unwrap();
}

#[tokio::test]
async fn redis_rate_limiter_honours_the_budget_contract_and_is_shared_by_nodes() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("ordermill-test-{}", uuid::Uuid::now_v7());
    let a = RedisStockCache::connect(&url, &prefix).await.unwrap();
    let limiter = a.rate_limiter(contract::rate_limiter_quota());
    contract::run_rate_limiter(&limiter).await;

    use ordermill_core::ports::RateLimiter;
    let b = RedisStockCache::connect(&url, &prefix).await.unwrap();
    let on_b = b.rate_limiter(contract::rate_limiter_quota());
    for i in 0..5 {
        let node = if i % 2 == 0 { &limiter } else { &on_b };
        assert_eq!(node.acquire("carol").await.unwrap(), None, "request {i} of the burst");
    }
    assert!(
        on_b.acquire("carol").await.unwrap().is_some(),
        "two nodes spend one budget of 5: the 6th is refused on either"
    );
}

/// Concurrent requests share merged script calls: each still spends its own client's budget,
/// in order, so one client's burst of 5 admits exactly 5 of 40 sent at once, and 40 clients
/// sending at once are all admitted.
#[tokio::test]
async fn merged_budget_calls_spend_each_request_once() {
    let Some(url) = redis_url() else { return };
    let prefix = format!("ordermill-test-{}", uuid::Uuid::now_v7());
    let cache = RedisStockCache::connect(&url, &prefix).await.unwrap();
    let limiter = std::sync::Arc::new(cache.rate_limiter(contract::rate_limiter_quota()));

    use ordermill_core::ports::RateLimiter;
    let send = |keys: Vec<String>| {
        let mut calls = tokio::task::JoinSet::new();
        for key in keys {
            let limiter = limiter.clone();
            calls.spawn(async move { limiter.acquire(&key).await.unwrap() });
        }
        calls.join_all()
    };
    let one_client = send(vec!["dave".to_owned(); 40]).await;
    let admitted = one_client.iter().filter(|wait| wait.is_none()).count();
    assert_eq!(admitted, 5, "one client's burst, however its requests were merged");

    let many = send((0..40).map(|i| format!("client-{i}")).collect()).await;
    assert!(many.iter().all(Option::is_none), "each client's own first request");
}

/// A `redis-server` of the test's own, keeping an append-only file in `dir` (the shared one
/// keeps nothing on disk); killed on drop.
struct PrivateRedis(std::process::Child);

impl PrivateRedis {
    fn start(dir: &std::path::Path, port: u16) -> PrivateRedis {
        let child = std::process::Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--dir"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package) runs");
        PrivateRedis(child)
    }

    /// SHUTDOWN (which writes the file out), and waits for the process to end.
    async fn shut_down(&mut self, url: &str) {
        let mut conn = answering(url).await;
        let _ = redis::cmd("SHUTDOWN").query_async::<()>(&mut conn).await;
        self.0.wait().unwrap();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A connection to `url` once it answers PING (within 10 s).
async fn answering(url: &str) -> redis::aio::MultiplexedConnection {
    let client = redis::Client::open(url).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Ok(mut conn) = client.get_multiplexed_async_connection().await
            && redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok()
        {
            return conn;
        }
        assert!(std::time::Instant::now() < deadline, "{url} does not answer");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn counts_a_restarted_redis_read_back_from_disk_are_rebuilt_not_believed() {
    use ordermill_core::ports::{CacheError, StockCache};
    use ordermill_core::{Money, OrderLine, Quantity, Sku};
    // Runs where the Redis tests run: it needs the redis-server those machines have.
    let Some(_) = redis_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("redis://127.0.0.1:{port}");
    let mut server = PrivateRedis::start(dir.path(), port);
    answering(&url).await;

    let prefix = format!("ordermill-test-{}", uuid::Uuid::now_v7());
    let cache = RedisStockCache::connect(&url, &prefix).await.unwrap();
    let sku = Sku::parse("hot").unwrap();
    let line = OrderLine::priced(sku.clone(), Quantity::parse(2).unwrap(), Money::ZERO).unwrap();
    let ttl = std::time::Duration::from_secs(60);
    assert!(cache.join_shared("a", &[(sku.clone(), 10)], ttl).await.unwrap());
    cache.reserve(std::slice::from_ref(&line)).await.unwrap();
    assert!(cache.is_whole().await.unwrap());

    server.shut_down(&url).await;
    let _server = PrivateRedis::start(dir.path(), port);
    let mut conn = answering(&url).await;
    let restored: Option<i64> = redis::cmd("GET")
        .arg(format!("{{{prefix}}}:stock:hot"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(restored, Some(8), "the counts came back from the append-only file");

    // The cache's own connection reconnects by itself; its first calls may still fail.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let whole = loop {
        match cache.is_whole().await {
            Ok(whole) => break whole,
            Err(_) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(error) => panic!("Redis did not come back: {error}"),
        }
    };
    assert!(!whole, "counts from before the restart are not believed");
    let err = cache.reserve(std::slice::from_ref(&line)).await.unwrap_err();
    assert!(matches!(err, CacheError::Lost), "not sold from meanwhile: {err:?}");

    assert!(cache.rebuild(None, &[(sku.clone(), 8)]).await.unwrap());
    assert!(cache.is_whole().await.unwrap(), "rebuilt on this server: believed again");
    cache.reserve(std::slice::from_ref(&line)).await.unwrap();
    assert_eq!(cache.available(&sku).await.unwrap(), Some(6));
}

#[tokio::test]
async fn a_rediss_url_is_verified_against_the_given_ca_and_refused_without_it() {
    use ordermill_core::ports::{CacheError, StockCache};
    let Some(url) = redis_url() else { return };
    let upstream =
        match redis::IntoConnectionInfo::into_connection_info(url.as_str()).unwrap().addr() {
            redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
            other => panic!("the test Redis is reached over TCP, not {other:?}"),
        };
    let ca = ordermill_tls_testkit::TestCa::new();
    let (port, carried) = ca.front(upstream).await;
    let tls_url = format!("rediss://127.0.0.1:{port}");
    let prefix = format!("ordermill-test-{}", uuid::Uuid::now_v7());

    let cache = RedisStockCache::connect_with(&tls_url, &prefix, Some(ca.pem.clone().into_bytes()))
        .await
        .unwrap();
    let sku = ordermill_core::Sku::parse("tls").unwrap();
    assert!(cache.rebuild(None, &[(sku.clone(), 5)]).await.unwrap());
    assert_eq!(cache.adjust(&sku, -2).await.unwrap(), 3);
    assert!(cache.is_whole().await.unwrap());
    assert!(carried.load(std::sync::atomic::Ordering::Relaxed) >= 1, "it went through TLS");
    // The same counts, read over plain TCP from the Redis behind.
    let plain = RedisStockCache::connect(&url, &prefix).await.unwrap();
    assert_eq!(plain.available(&sku).await.unwrap(), Some(3));

    // The system's CAs do not know the test's: no connection.
    let Err(err) = RedisStockCache::connect(&tls_url, &prefix).await else {
        panic!("a certificate no trusted CA signed was accepted")
    };
    assert!(matches!(&err, CacheError::Unavailable(why) if why.contains("certificate")), "{err:?}");
}
