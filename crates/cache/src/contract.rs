//! The contract every [`StockCache`] backend must honour. Each backend's tests call
//! [`run_all`] with a fresh, empty cache (its own key prefix for shared engines).

use std::sync::Arc;

use ordermill_core::ports::{CacheError, StockCache};
use ordermill_core::{Money, OrderLine, Quantity, Sku};

fn line(sku: &str, qty: i64) -> OrderLine {
    // Test fixtures: the literals below are valid by construction.
    OrderLine::priced(
        Sku::parse(sku).expect("fixture sku is valid"),
        Quantity::parse(qty).expect("fixture quantity is valid"),
        Money::ZERO,
    )
    .expect("zero price cannot overflow")
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).expect("fixture sku is valid")
}

pub use ordermill_core::test_support::service_url;

/// Runs every contract check; panics (failing the calling test) on the first violation.
pub async fn run_all(cache: Arc<dyn StockCache>) {
    // A cache is sold from once the store has set its counts (a start, or a rebuild).
    assert!(cache.rebuild(None, &[]).await.expect("rebuild"), "an owner-less rebuild always runs");
    assert!(cache.is_whole().await.expect("read"), "whole once rebuilt");
    reserve_takes_units_and_release_gives_them_back(&*cache).await;
    reservation_is_all_or_none(&*cache).await;
    reservations_of_a_batch_are_taken_in_its_order(&*cache).await;
    unknown_sku_is_out_of_stock(&*cache).await;
    reservations_carry_the_epoch_of_their_counts(&*cache).await;
    adjust_never_goes_negative(&*cache).await;
    set_if_absent_never_overwrites_a_live_count(&*cache).await;
    concurrent_buyers_never_oversell(cache).await;
}

async fn set_if_absent_never_overwrites_a_live_count(cache: &dyn StockCache) {
    assert!(cache.set_available_if_absent(&sku("n1"), 7).await.expect("set"), "absent: set");
    cache.reserve(&[line("n1", 2)]).await.expect("2 of 7 fit");
    assert!(!cache.set_available_if_absent(&sku("n1"), 7).await.expect("set"), "present: kept");
    assert_eq!(cache.available(&sku("n1")).await.expect("read"), Some(5));
}

/// Sets one SKU's count, as a rebuild from the store does.
async fn set(cache: &dyn StockCache, name: &str, available: i64) {
    assert!(cache.rebuild(None, &[(sku(name), available)]).await.expect("set"));
}

async fn reserve_takes_units_and_release_gives_them_back(cache: &dyn StockCache) {
    set(cache, "c1", 5).await;
    cache.reserve(&[line("c1", 3)]).await.expect("3 of 5 fit");
    assert_eq!(cache.available(&sku("c1")).await.expect("read"), Some(2));
    let err = cache.reserve(&[line("c1", 3)]).await.expect_err("3 of 2 do not fit");
    assert!(matches!(err, CacheError::OutOfStock { ref sku } if sku.as_str() == "c1"));
    assert_eq!(cache.available(&sku("c1")).await.expect("read"), Some(2));
    cache.release(&[line("c1", 3)]).await.expect("release");
    assert_eq!(cache.available(&sku("c1")).await.expect("read"), Some(5));
}

async fn reservation_is_all_or_none(cache: &dyn StockCache) {
    set(cache, "a2", 10).await;
    set(cache, "b2", 1).await;
    set(cache, "c2", 10).await;
    let err = cache
        .reserve(&[line("a2", 4), line("b2", 2), line("c2", 4)])
        .await
        .expect_err("b2 is short");
    assert!(matches!(err, CacheError::OutOfStock { ref sku } if sku.as_str() == "b2"));
    for (s, n) in [("a2", 10), ("b2", 1), ("c2", 10)] {
        assert_eq!(cache.available(&sku(s)).await.expect("read"), Some(n), "{s} untouched");
    }
    cache.reserve(&[line("a2", 4), line("b2", 1), line("c2", 4)]).await.expect("all fit");
    for (s, n) in [("a2", 6), ("b2", 0), ("c2", 6)] {
        assert_eq!(cache.available(&sku(s)).await.expect("read"), Some(n));
    }
}

async fn reservations_of_a_batch_are_taken_in_its_order(cache: &dyn StockCache) {
    set(cache, "e1", 3).await;
    set(cache, "e2", 5).await;
    let orders = [
        vec![line("e1", 2)],
        vec![line("e1", 2), line("e2", 1)],
        vec![line("e1", 1), line("e2", 1)],
        vec![line("never-seen-e", 1)],
    ];
    let lines: Vec<&[OrderLine]> = orders.iter().map(Vec::as_slice).collect();
    let answers = cache.reserve_each(&lines).await;
    assert_eq!(answers.len(), 4, "one answer per order");
    assert!(answers[0].is_ok(), "the first order takes 2 of 3: {:?}", answers[0]);
    assert!(
        matches!(answers[1], Err(CacheError::OutOfStock { ref sku }) if sku.as_str() == "e1"),
        "the second finds 1 left, all or none: {:?}",
        answers[1]
    );
    assert!(answers[2].is_ok(), "the third takes the last unit: {:?}", answers[2]);
    assert!(matches!(answers[3], Err(CacheError::OutOfStock { .. })), "{:?}", answers[3]);
    assert_eq!(cache.available(&sku("e1")).await.expect("read"), Some(0));
    assert_eq!(cache.available(&sku("e2")).await.expect("read"), Some(4), "one unit, not two");
    assert!(cache.reserve_each(&[]).await.is_empty());
}

/// An order written after the counts were set anew from the store must lead to a recount; one
/// written under the counts it reserved from must not.
async fn reservations_carry_the_epoch_of_their_counts(cache: &dyn StockCache) {
    set(cache, "p1", 5).await;
    let before = cache.reserve(&[line("p1", 1)]).await.expect("1 of 5 fits");
    let found = cache.recount_if_superseded(before).await.expect("check");
    assert_eq!(found, Some(before), "the counts it reserved from are the live ones");
    assert!(cache.is_whole().await.expect("read"), "nothing to recount");

    assert!(cache.rebuild(None, &[(sku("p1"), 4)]).await.expect("rebuild"));
    let after = cache.reserve(&[line("p1", 1)]).await.expect("1 of 4 fits");
    if !before.may_be_superseded() {
        assert_eq!(after, before, "a cache set whole only at start keeps one epoch");
        return;
    }
    assert!(before.superseded_by(after), "counts set anew: {before:?} then {after:?}");
    assert_eq!(cache.recount_if_superseded(after).await.expect("check"), Some(after));
    assert!(cache.is_whole().await.expect("read"), "the newer reservation needs no recount");
    let found = cache.recount_if_superseded(before).await.expect("check");
    assert_eq!(found, Some(after));
    assert!(!cache.is_whole().await.expect("read"), "written after a rebuild: counts marked lost");
    assert_eq!(cache.recount_if_superseded(before).await.expect("check"), None, "lost already");
    assert!(cache.rebuild(None, &[(sku("p1"), 3)]).await.expect("rebuild"));
    let latest = cache.reserve(&[line("p1", 1)]).await.expect("1 of 3 fits");
    assert!(after.superseded_by(latest), "a rebuild after a loss still moves the epoch on");
}

async fn unknown_sku_is_out_of_stock(cache: &dyn StockCache) {
    assert_eq!(cache.available(&sku("never-seen")).await.expect("read"), None);
    let err = cache.reserve(&[line("never-seen", 1)]).await.expect_err("unknown");
    assert!(matches!(err, CacheError::OutOfStock { .. }));
}

async fn adjust_never_goes_negative(cache: &dyn StockCache) {
    assert_eq!(cache.adjust(&sku("d4"), 7).await.expect("creates at 0 then adds"), 7);
    assert_eq!(cache.adjust(&sku("d4"), -5).await.expect("down to 2"), 2);
    let err = cache.adjust(&sku("d4"), -3).await.expect_err("would be -1");
    assert!(matches!(err, CacheError::Insufficient { available: 2, requested: -3, .. }));
    assert_eq!(cache.available(&sku("d4")).await.expect("read"), Some(2));
}

async fn concurrent_buyers_never_oversell(cache: Arc<dyn StockCache>) {
    set(&*cache, "hot5", 100).await;
    set(&*cache, "side5", 1_000).await;
    let mut tasks = Vec::new();
    for i in 0..64 {
        let cache = cache.clone();
        tasks.push(tokio::spawn(async move {
            let mut won = 0;
            for _ in 0..20 {
                // Half the buyers also take a second SKU, so all-or-none is raced too.
                let lines = if i % 2 == 0 {
                    vec![line("hot5", 1)]
                } else {
                    vec![line("side5", 1), line("hot5", 1)]
                };
                // Each order answered on its own, however the cache merges them: the short
                // SKU named is always the hot one.
                match cache.reserve(&lines).await {
                    Ok(_) => won += 1,
                    Err(CacheError::OutOfStock { sku }) => assert_eq!(sku.as_str(), "hot5"),
                    Err(other) => panic!("an order failed for another reason: {other:?}"),
                }
                tokio::task::yield_now().await;
            }
            (i % 2, won)
        }));
    }
    let mut won_single = 0;
    let mut won_pair = 0;
    for task in tasks {
        let (kind, won) = task.await.expect("buyer task panicked");
        if kind == 0 { won_single += won } else { won_pair += won }
    }
    assert_eq!(won_single + won_pair, 100, "exactly the 100 hot units are sold");
    assert_eq!(cache.available(&sku("hot5")).await.expect("read"), Some(0));
    assert_eq!(
        cache.available(&sku("side5")).await.expect("read"),
        Some(1_000 - won_pair),
        "the side SKU is taken only by orders that got the hot unit too"
    );
}

/// The order read cache contract: a miss, a put read back whole, a newer copy replacing an
/// older one, several put at once each read back, and an entry gone once its time to live (which the caller built the cache with,
/// at most a few hundred milliseconds) has passed.
pub async fn run_read_cache(cache: Arc<dyn ordermill_core::ports::OrderReadCache>) {
    use std::time::{Duration, Instant};

    use ordermill_core::{CustomerId, Order, OrderStatus, StatusChange, UnixMillis};
    let now = UnixMillis(1_790_000_000_000);
    let lines = vec![line("sku-1", 2), line("sku-2", 1)];
    let accepted = Order {
        id: ordermill_core::OrderIdGenerator::new().next(now),
        customer_id: CustomerId::parse("c-1").expect("valid"),
        total: ordermill_core::order::total_of(&lines).expect("fits"),
        lines,
        status: OrderStatus::Accepted,
        created_at: now,
        idempotency_key: None,
        history: Vec::new(),
        awaited_payment: None,
    };
    let confirmed = Order {
        status: OrderStatus::Confirmed,
        history: vec![StatusChange::new(OrderStatus::Confirmed, UnixMillis(now.0 + 5))],
        ..accepted.clone()
    };
    assert_eq!(cache.get(&accepted.id).await.expect("get"), None, "a miss");
    cache.put(&accepted).await.expect("put");
    cache.put(&confirmed).await.expect("put");
    assert_eq!(cache.get(&accepted.id).await.expect("get"), Some(confirmed.clone()));
    // Several at once (a consumer batch's newly final orders): each read back whole.
    let ids = ordermill_core::OrderIdGenerator::new();
    let others: Vec<Order> =
        (0..3).map(|_| Order { id: ids.next(now), ..confirmed.clone() }).collect();
    cache.put_many(&others).await.expect("put many");
    for other in &others {
        assert_eq!(cache.get(&other.id).await.expect("get").as_ref(), Some(other));
    }
    cache.put_many(&[]).await.expect("nothing to put");
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.get(&accepted.id).await.expect("get").is_some() {
        assert!(Instant::now() < deadline, "the entry outlived its time to live");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The request-budget contract for a limiter built with a quota of 20/s and a burst of 5:
/// the burst passes, the next is refused with a wait near one emission interval, a key's
/// budget is its own, and waiting the given time lets a request through again.
///
/// # Panics
/// On the first violation.
pub async fn run_rate_limiter(limiter: &dyn ordermill_core::ports::RateLimiter) {
    use std::time::Duration;
    for i in 0..5 {
        assert_eq!(limiter.acquire("alice").await.expect("acquire"), None, "burst request {i}");
    }
    let wait = limiter.acquire("alice").await.expect("acquire").expect("the 6th is refused");
    assert!(
        wait > Duration::ZERO && wait <= Duration::from_millis(60),
        "one interval of 50 ms (with slack), got {wait:?}"
    );
    assert_eq!(limiter.acquire("bob").await.expect("acquire"), None, "bob's budget is his own");
    tokio::time::sleep(wait + Duration::from_millis(5)).await;
    assert_eq!(limiter.acquire("alice").await.expect("acquire"), None, "after the wait");
    assert!(limiter.acquire("alice").await.expect("acquire").is_some(), "and only one");
}

/// The quota [`run_rate_limiter`] expects.
pub fn rate_limiter_quota() -> ordermill_core::ports::RateQuota {
    ordermill_core::ports::RateQuota {
        per_second: std::num::NonZeroU32::new(20).expect("not zero"),
        burst: std::num::NonZeroU32::new(5).expect("not zero"),
    }
}
