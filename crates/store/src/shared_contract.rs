//! What only a database that several nodes share must get right, checked the same way on both
//! such stores (PostgreSQL, MySQL): deal joins, outbox claims and group commits racing from two
//! nodes, leases that run out, per-customer limits counted for every node, a large commit.
//! Each check takes handles on one freshly migrated database; two handles are two nodes (two
//! pools). Called from `store/tests/postgres_contract.rs` and `mysql_contract.rs`, which keep
//! what differs per engine (migrations, partitions, errors, lock conflicts).
//!
//! A failed check panics with what went wrong: these are test fixtures, so `expect` is the
//! failure report.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ordermill_core::ports::{
    AcceptedOrder, DealStore, Effect, EffectOutcome, JoinOutcome, LimitStore, OrderStore, Outbox,
    StoreError,
};
use ordermill_core::{
    CustomerId, Deal, DealId, DealStatus, Fact, GroupSize, Money, OrderIdGenerator, OutboxEvent,
    RoutingKey, Sku, UnixMillis,
};
use uuid::Uuid;

use crate::contract::{self, product_for_tests as product};
use crate::deal_contract;

/// A store several nodes share: every port the shared-database stores implement.
pub trait SharedStore:
    OrderStore + DealStore + LimitStore + Outbox + Clone + Send + Sync + 'static
{
}

impl<S: OrderStore + DealStore + LimitStore + Outbox + Clone + Send + Sync + 'static> SharedStore
    for S
{
}

fn sku(s: &str) -> Sku {
    Sku::parse(s).expect("fixture sku is valid")
}

/// Product `o1` and `n` committed orders for it.
async fn with_orders<S: SharedStore>(store: &S, n: usize) -> Vec<AcceptedOrder> {
    store.upsert_product(&product("o1", 1_000_000)).await.expect("insert product");
    let ids = OrderIdGenerator::new();
    let batch: Vec<AcceptedOrder> =
        (0..n).map(|_| contract::accepted(&ids, &[("o1", 1)], None)).collect();
    store.commit_orders(Arc::new(batch.clone())).await.expect("commit");
    batch
}

/// 20 customers join a deal of 3 through two nodes at once: exactly 3 are admitted, they are
/// the members, losers hold no stock, and 3 `deal.joined` + 3 `deal.completed` events wait in
/// the outbox with their bodies.
pub async fn two_nodes_joining_one_deal_at_once_admit_exactly_its_group_size<S: SharedStore>(
    a: S,
    b: S,
) {
    a.upsert_product(&product("g1", 100)).await.expect("insert product");
    let ids = Arc::new(OrderIdGenerator::new());
    let now = UnixMillis(1_790_000_000_000);
    let deal = Deal {
        id: DealId::from_uuid(ids.next_uuid(now)),
        sku: sku("g1"),
        deal_price: Money::parse("deal_price", "1.00").expect("fixture price"),
        group_size: GroupSize::parse(3).expect("fixture size"),
        created_at: now,
        expires_at: UnixMillis(now.0 + 60_000),
        status: DealStatus::Open,
        members: Vec::new(),
    };
    a.create_deal(&deal).await.expect("create deal");

    let mut joins = tokio::task::JoinSet::new();
    for i in 0..20 {
        let node = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (ids, deal) = (ids.clone(), deal.clone());
        joins.spawn(async move {
            let order = deal_contract::member_order(&ids, &deal, &format!("c{i}"));
            let completion: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
            node.join_deal(deal.id, order, completion, now).await.expect("join")
        });
    }
    let mut admitted = Vec::new();
    while let Some(outcome) = joins.join_next().await {
        match outcome.expect("join task") {
            JoinOutcome::Joined { order, .. } => admitted.push(order.id),
            JoinOutcome::Refused(_) => {}
            JoinOutcome::NotFound => panic!("the deal exists"),
        }
    }
    assert_eq!(admitted.len(), 3, "exactly group_size joins win");

    let stored = b.get_deal(deal.id).await.expect("read").expect("the deal");
    assert_eq!(stored.status, DealStatus::Completed);
    let mut members: Vec<_> = stored.members.iter().map(|m| m.order_id).collect();
    members.sort();
    admitted.sort();
    assert_eq!(members, admitted, "the members are the winners");
    let g1 = a.get_product(&sku("g1")).await.expect("read").expect("the product");
    assert_eq!(g1.reserved, 3, "losers hold no stock");

    let claimed =
        a.claim_unpublished(100, Duration::ZERO, Duration::from_secs(600)).await.expect("claim");
    let mut keys: Vec<&str> = claimed.iter().map(|e| &*e.routing_key).collect();
    keys.sort();
    assert_eq!(
        keys,
        [RoutingKey::DealCompleted.as_str(); 3]
            .into_iter()
            .chain([RoutingKey::DealJoined.as_str(); 3])
            .collect::<Vec<_>>()
    );
    for event in &claimed {
        let header = OutboxEvent::header(&event.payload).expect("an event body");
        assert_eq!(header.event_id, event.event_id);
    }
}

/// Two nodes claim 200 events (40 commits of 5) 7 at a time: none twice, none to both, all
/// claimed, order.created bodies rebuilt whole; claimed is not published; published is gone.
pub async fn two_concurrent_claimers_never_get_the_same_event<S: SharedStore>(a: S, b: S) {
    let mut batch = Vec::new();
    for _ in 0..40 {
        batch.extend(with_orders(&a, 5).await);
    }
    let claim_all = |node: S| {
        tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                let claimed = node
                    .claim_unpublished(7, Duration::ZERO, Duration::from_secs(600))
                    .await
                    .expect("claim");
                if claimed.is_empty() {
                    return got;
                }
                got.extend(claimed);
            }
        })
    };
    let (got_a, got_b) = (claim_all(a.clone()), claim_all(b));
    let (got_a, got_b) = (got_a.await.expect("claimer"), got_b.await.expect("claimer"));
    let ids_a: HashSet<Uuid> = got_a.iter().map(|e| e.event_id).collect();
    let ids_b: HashSet<Uuid> = got_b.iter().map(|e| e.event_id).collect();
    assert_eq!(ids_a.len(), got_a.len(), "no event twice to one claimer");
    assert_eq!(ids_b.len(), got_b.len(), "no event twice to one claimer");
    assert!(ids_a.is_disjoint(&ids_b), "no event to both claimers");
    let expected: HashSet<Uuid> = batch.iter().map(|o| o.event_id).collect();
    assert_eq!(&ids_a | &ids_b, expected, "every event claimed by someone");
    let first = got_a.iter().chain(&got_b).find(|e| e.event_id == batch[0].event_id);
    let first = first.expect("the first event was claimed");
    assert_eq!(&*first.routing_key, "order.created");
    assert_eq!(
        &*first.payload,
        OutboxEvent::order_created(&batch[0].order, batch[0].event_id).payload
    );
    let none = a.claim_unpublished(10, Duration::ZERO, Duration::ZERO).await.expect("claim");
    assert!(none.is_empty(), "under their leases nothing is claimable");
    assert_eq!(a.outbox_len().await.expect("len"), 200, "claimed is not published");
    a.mark_published(expected.into_iter().collect()).await.expect("publish");
    assert_eq!(a.outbox_len().await.expect("len"), 0);
}

/// A claim too young for `min_age` gets nothing; a claimer that "dies" holding an event loses
/// it when its lease runs out; a new claim holds; a released claim is claimable at once.
pub async fn an_expired_lease_makes_an_event_claimable_again<S: SharedStore>(store: S) {
    let batch = with_orders(&store, 1).await;
    let event = batch[0].event_id;
    let young = store
        .claim_unpublished(10, Duration::from_secs(3600), Duration::from_secs(60))
        .await
        .expect("claim");
    assert!(young.is_empty(), "too young for a claim that wants events older than an hour");
    let claimed = store
        .claim_unpublished(10, Duration::ZERO, Duration::from_millis(50))
        .await
        .expect("claim");
    assert_eq!(claimed.iter().map(|e| e.event_id).collect::<Vec<_>>(), vec![event]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let again = loop {
        let claimed = store
            .claim_unpublished(10, Duration::ZERO, Duration::from_secs(600))
            .await
            .expect("claim");
        if !claimed.is_empty() {
            break claimed;
        }
        assert!(Instant::now() < deadline, "the lease never ran out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(again.iter().map(|e| e.event_id).collect::<Vec<_>>(), vec![event]);
    let third =
        store.claim_unpublished(10, Duration::ZERO, Duration::from_secs(600)).await.expect("claim");
    assert!(third.is_empty(), "the new claim holds");
    store.release_claims(vec![event]).await.expect("release");
    let released =
        store.claim_unpublished(10, Duration::ZERO, Duration::from_secs(600)).await.expect("claim");
    assert_eq!(released.iter().map(|e| e.event_id).collect::<Vec<_>>(), vec![event]);
}

/// The oldest unpublished event's age: none in an empty outbox; growing while events wait,
/// claimed or not; the oldest's while it is left; none once every event is published.
pub async fn the_oldest_unpublished_event_s_age_grows_until_it_is_published<S: SharedStore>(
    store: S,
) {
    assert_eq!(store.oldest_unpublished_age().await.expect("age"), None, "an empty outbox");
    let batch = with_orders(&store, 3).await;
    let first = store.oldest_unpublished_age().await.expect("age").expect("3 events wait");
    assert!(first < Duration::from_secs(60), "just written, by the database's clock: {first:?}");
    let claimed =
        store.claim_unpublished(10, Duration::ZERO, Duration::from_secs(600)).await.expect("claim");
    assert_eq!(claimed.len(), 3);
    let grown = first + Duration::from_millis(200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let age = store.oldest_unpublished_age().await.expect("age").expect("claimed still waits");
        if age >= grown {
            break;
        }
        assert!(Instant::now() < deadline, "the age stayed under {grown:?}: {age:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    store.mark_published(batch[1..].iter().map(|o| o.event_id).collect()).await.expect("publish");
    let left = store.oldest_unpublished_age().await.expect("age").expect("one event waits");
    assert!(left >= grown, "the oldest event left is the first one: {left:?}");
    store.mark_published(vec![batch[0].event_id]).await.expect("publish");
    assert_eq!(store.oldest_unpublished_age().await.expect("age"), None, "all published");
}

/// An effect that gives an order's units back notes the return in its own transaction; a
/// note is overdue only once older than asked, is forgotten by `stock_returned`, and a
/// redelivered release notes nothing again.
pub async fn a_return_of_units_is_noted_until_the_cache_has_them<S: SharedStore>(store: S) {
    store.upsert_product(&product("r1", 10)).await.expect("insert product");
    let ids = OrderIdGenerator::new();
    let (a, b) = (
        contract::accepted(&ids, &[("r1", 2)], None),
        contract::accepted(&ids, &[("r1", 1)], None),
    );
    store.commit_orders(Arc::new(vec![a.clone(), b.clone()])).await.expect("commit");
    let overdue = |age: Duration, limit: u32| {
        let store = store.clone();
        async move {
            let mut noted = store.overdue_stock_returns(age, limit).await.expect("read notes");
            noted.sort();
            noted
        }
    };
    assert!(overdue(Duration::ZERO, 10).await.is_empty(), "nothing given back yet");
    let declined = |o: &AcceptedOrder| {
        contract::effect(&ids, "payment", o.event_id, o.order.id, Some(Fact::PaymentFailed))
    };
    let (declined_a, declined_b) = (declined(&a), declined(&b));
    store.apply_effects(vec![declined_a.clone(), declined_b.clone()]).await.expect("apply");
    assert!(overdue(Duration::ZERO, 10).await.is_empty(), "a decline gives nothing back itself");

    let release = |o: &AcceptedOrder, d: &Effect| {
        contract::effect(
            &ids,
            "inventory",
            d.new_event_ids[0],
            o.order.id,
            Some(Fact::StockReleased),
        )
    };
    let release_a = release(&a, &declined_a);
    store.apply_effects(vec![release_a.clone(), release(&b, &declined_b)]).await.expect("apply");
    let mut both = vec![a.order.id, b.order.id];
    both.sort();
    assert_eq!(overdue(Duration::ZERO, 10).await, both, "each release noted");
    assert!(overdue(Duration::from_secs(3600), 10).await.is_empty(), "none an hour old");
    assert_eq!(overdue(Duration::ZERO, 1).await.len(), 1, "at most the limit");

    store.stock_returned(vec![a.order.id]).await.expect("forget");
    assert_eq!(overdue(Duration::ZERO, 10).await, vec![b.order.id]);
    let again = store.apply_effects(vec![release_a]).await.expect("apply");
    assert!(matches!(again.as_slice(), [EffectOutcome::AlreadyProcessed]), "{again:?}");
    assert_eq!(overdue(Duration::ZERO, 10).await, vec![b.order.id], "a redelivery notes nothing");
    store.stock_returned(vec![b.order.id]).await.expect("forget");
    assert!(overdue(Duration::ZERO, 10).await.is_empty());
}

/// Five commits of 500 orders (3 lines, a key each) land whole. Not a benchmark: what one such
/// commit costs on this machine is printed, for a look.
pub async fn a_batch_of_500_orders_commits_in_one_call<S: SharedStore>(store: S) {
    for s in ["b1", "b2", "b3"] {
        store.upsert_product(&product(s, 1_000_000)).await.expect("insert product");
    }
    let ids = OrderIdGenerator::new();
    let mut timings = Vec::new();
    for round in 0..5 {
        let batch: Vec<AcceptedOrder> = (0..500)
            .map(|i| {
                let key = format!("bench-{round}-{i}");
                contract::accepted(&ids, &[("b1", 1), ("b2", 2), ("b3", 1)], Some(&key))
            })
            .collect();
        let started = Instant::now();
        store.commit_orders(Arc::new(batch)).await.expect("commit");
        timings.push(started.elapsed());
    }
    timings.sort();
    eprintln!("commit_orders of 500 orders (3 lines each), 5 runs sorted: {timings:?}");
    let b2 = store.get_product(&sku("b2")).await.expect("read").expect("the product");
    assert_eq!(b2.reserved, 5 * 500 * 2);
    assert_eq!(store.outbox_len().await.expect("len"), 2_500);
}

/// Two nodes commit batches naming the same SKUs in opposite orders (locks taken in that
/// order would deadlock): every batch lands.
pub async fn two_nodes_committing_the_same_skus_at_once_both_land<S: SharedStore>(a: S, b: S) {
    for s in ["x1", "x2", "x3"] {
        a.upsert_product(&product(s, 1_000_000)).await.expect("insert product");
    }
    let ids = Arc::new(OrderIdGenerator::new());
    let commits = |node: S, lines: &'static [(&'static str, i64)]| {
        let ids = ids.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                let batch: Vec<AcceptedOrder> =
                    (0..20).map(|_| contract::accepted(&ids, lines, None)).collect();
                node.commit_orders(Arc::new(batch)).await.expect("commit");
            }
        })
    };
    let first = commits(a.clone(), &[("x1", 1), ("x2", 1), ("x3", 1)]);
    let second = commits(b, &[("x3", 1), ("x2", 1), ("x1", 1)]);
    first.await.expect("first node");
    second.await.expect("second node");
    for product in a.load_products().await.expect("load") {
        assert_eq!(product.reserved, 2 * 20 * 20, "{}", product.sku.as_str());
    }
}

/// A per-customer limit counts what each customer holds through every node: units held before
/// the limit was set count, the order going past it is refused alone and writes nothing, a
/// cancelled order stops counting, and without a limit anything goes again.
pub async fn the_store_holds_every_node_to_a_per_customer_limit<S: SharedStore>(store: S) {
    store.upsert_product(&product("l1", 100)).await.expect("insert product");
    let ids = OrderIdGenerator::new();
    let by =
        |customer: &str, units: i64| contract::accepted_by(&ids, customer, &[("l1", units)], None);
    let early = by("c-1", 1);
    store.commit_orders(Arc::new(vec![early.clone()])).await.expect("commit");
    store.set_purchase_limit(&sku("l1"), Some(3)).await.expect("set limit");
    assert_eq!(
        store.units_by_customer(&sku("l1")).await.expect("units"),
        [(CustomerId::parse("c-1").expect("fixture customer"), 1)]
    );
    store.commit_orders(Arc::new(vec![by("c-1", 2)])).await.expect("commit");
    let over = by("c-1", 1);
    let refused = store.commit_orders(Arc::new(vec![over.clone(), by("c-2", 3)])).await;
    assert!(
        matches!(&refused, Err(StoreError::LimitExceeded(named)) if named == "l1"),
        "{refused:?}"
    );
    assert!(store.get_order(over.order.id).await.expect("read").is_none());
    store.commit_orders(Arc::new(vec![by("c-2", 3)])).await.expect("commit");
    let declined = contract::effect(
        &ids,
        "payment",
        early.event_id,
        early.order.id,
        Some(Fact::PaymentFailed),
    );
    store.apply_effects(vec![declined]).await.expect("apply");
    store.commit_orders(Arc::new(vec![by("c-1", 1)])).await.expect("commit");
    assert!(matches!(
        store.commit_orders(Arc::new(vec![by("c-1", 1)])).await,
        Err(StoreError::LimitExceeded(_))
    ));
    store.set_purchase_limit(&sku("l1"), None).await.expect("remove limit");
    store.commit_orders(Arc::new(vec![by("c-1", 10)])).await.expect("commit");
}

/// A group commit held on a row lock past its deadline (`store` opened with a 500 ms one, its
/// schema migrated, product `o1` with 1,000 units whose row the caller holds locked until
/// `release` runs) fails as unavailable at about its deadline, naming the call and `setting`;
/// the store goes on serving on new connections; and reading the batch back waits until no
/// commit holds the batch's product rows, then answers what the store holds. A read that did
/// not wait could answer "not stored" just before a commit still running on the server after
/// its client gave up landed, and the caller would give back units that are sold.
pub async fn a_commit_cut_off_by_its_deadline_is_read_back_only_once_it_has_ended<S, F>(
    store: &S,
    setting: &str,
    release: F,
) where
    S: SharedStore,
    F: std::future::Future<Output = ()>,
{
    let ids = OrderIdGenerator::new();
    let batch: Vec<AcceptedOrder> =
        (0..3).map(|_| contract::accepted(&ids, &[("o1", 2)], None)).collect();
    let started = Instant::now();
    let err = store.commit_orders(Arc::new(batch.clone())).await.expect_err("held past it");
    let StoreError::Unavailable(message) = &err else { panic!("expected Unavailable: {err:?}") };
    assert!(
        message.contains("a group commit")
            && message.contains("500 ms")
            && message.contains(setting),
        "{message}"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "cut off at its deadline");
    let read = store.batch_stored(&batch).await;
    assert!(
        matches!(read, Err(StoreError::Unavailable(_))),
        "no answer while a commit may hold the rows: {read:?}"
    );
    let reserved = store.load_products().await.expect("other calls go on")[0].reserved;
    assert_eq!(reserved, 0);

    release.await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let stored = loop {
        match store.batch_stored(&batch).await {
            Ok(stored) => break stored,
            Err(error) => {
                assert!(Instant::now() < deadline, "no answer: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    // Whichever way the abandoned commit ended, the answer matches the store.
    let found = store.get_order(batch[0].order.id).await.expect("read");
    let reserved = store.load_products().await.expect("read")[0].reserved;
    eprintln!("the abandoned commit {}", if stored { "landed" } else { "did not land" });
    assert_eq!(found.is_some(), stored);
    assert_eq!(reserved, if stored { 6 } else { 0 });
}

/// Every call hands its connection back through a bounded return of its own
/// (`crate::deadline`), not sqlx's drop: a slot that was not freed would leave later callers
/// waiting in the pool's acquire until it times out. Many more concurrent calls than
/// connections (`store` opened with a pool of 2, its schema migrated), in waves, the second
/// after the connections sat idle long enough to be pinged: every call is served.
pub async fn many_more_callers_than_connections_are_all_served<S: SharedStore>(store: S) {
    let batch = with_orders(&store, 3).await;
    for wave in 0..3 {
        let calls: Vec<_> = (0..64)
            .map(|i| {
                let (store, id) = (store.clone(), batch[i % batch.len()].order.id);
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        store.get_order(id).await.map(|o| o.is_some())
                    } else {
                        store.load_products().await.map(|p| p.len() == 1)
                    }
                })
            })
            .collect();
        for call in calls {
            let answer = call.await.expect("the call's task ends");
            assert!(matches!(answer, Ok(true)), "wave {wave}: {answer:?}");
        }
        tokio::time::sleep(Duration::from_millis(if wave == 0 { 1_200 } else { 50 })).await;
    }
}
