//! The PostgreSQL backend passes the store contract against the real server named by
//! `ORDERMILL_TEST_POSTGRES_URL` (each test in a schema of its own, dropped at the end), and
//! what only a shared server has: migrations run twice or at once, outbox claims from several
//! nodes, leases that run out. Unset: the tests say why they skip — unless
//! `ORDERMILL_TEST_REQUIRE_SERVICES=1` (CI), where a skip is a failure.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use ordermill_core::ports::{AcceptedOrder, OrderStore, Outbox, StoreError};
use ordermill_core::{OrderIdGenerator, Sku, UnixMillis};
use ordermill_store::postgres::DEFAULT_QUERY_TIMEOUT;
use ordermill_store::{PostgresStore, contract, deal_contract, shared_contract};
use uuid::Uuid;

mod postgres_support;
use postgres_support::{TestSchema, postgres_url, product, raw};

/// Every migration, in order: what a fresh schema gets.
const ALL_MIGRATIONS: [&str; 11] = [
    "0001_init",
    "0002_deals",
    "0003_customer_scope",
    "0004_stock_guard",
    "0005_partitions",
    "0006_customer_units",
    "0007_pay_later",
    "0008_reports",
    "0009_orders_room",
    "0010_stock_returns",
    "0011_outbox_batches",
];

async fn store_with_orders(schema: &TestSchema, n: usize) -> (PostgresStore, Vec<AcceptedOrder>) {
    let store = schema.migrated_store().await;
    store.upsert_product(&product("o1", 1_000_000)).await.unwrap();
    let ids = OrderIdGenerator::new();
    let batch: Vec<AcceptedOrder> =
        (0..n).map(|_| contract::accepted(&ids, &[("o1", 1)], None)).collect();
    store.commit_orders(Arc::new(batch.clone())).await.unwrap();
    (store, batch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_honours_the_store_contract() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    contract::run_all(Arc::new(schema.migrated_store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_honours_the_deal_contract() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    deal_contract::run_all(Arc::new(schema.migrated_store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_honours_the_report_contract() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    ordermill_store::report_contract::run_all(Arc::new(schema.migrated_store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_files_in_postgres_honour_the_contract() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let scratch = tempfile::tempdir().unwrap();
    ordermill_store::report_contract::files_contract(
        &schema.migrated_store().await,
        scratch.path(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_joining_one_deal_at_once_admit_exactly_its_group_size() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let a = schema.migrated_store().await;
    shared_contract::two_nodes_joining_one_deal_at_once_admit_exactly_its_group_size(
        a,
        schema.store().await,
    )
    .await;
}

#[tokio::test]
async fn migrating_twice_applies_nothing_the_second_time() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let store = schema.store().await;
    assert_eq!(store.migrate().await.unwrap(), ALL_MIGRATIONS);
    assert!(store.migrate().await.unwrap().is_empty());
    store.upsert_product(&product("m1", 1)).await.unwrap();
    assert!(store.migrate().await.unwrap().is_empty(), "data does not matter to migrations");
    assert_eq!(store.load_products().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_migrating_at_once_apply_each_migration_once() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let (a, b) = (schema.store().await, schema.store().await);
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let mut all = ra.clone();
    all.extend(rb.clone());
    all.sort();
    assert_eq!(all, ALL_MIGRATIONS, "each applied once, by one of them: {ra:?} {rb:?}");
}

#[tokio::test]
async fn connect_does_not_migrate() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let store = schema.store().await;
    let err = store.load_products().await.unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "no tables before migrate: {err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_claimers_never_get_the_same_event() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let a = schema.migrated_store().await;
    shared_contract::two_concurrent_claimers_never_get_the_same_event(a, schema.store().await)
        .await;
}

#[tokio::test]
async fn the_oldest_unpublished_event_s_age_grows_until_it_is_published() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    shared_contract::the_oldest_unpublished_event_s_age_grows_until_it_is_published(
        schema.migrated_store().await,
    )
    .await;
}

#[tokio::test]
async fn a_return_of_units_is_noted_until_the_cache_has_them() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    shared_contract::a_return_of_units_is_noted_until_the_cache_has_them(
        schema.migrated_store().await,
    )
    .await;
}

#[tokio::test]
async fn an_expired_lease_makes_an_event_claimable_again() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    shared_contract::an_expired_lease_makes_an_event_claimable_again(schema.migrated_store().await)
        .await;
}

#[tokio::test]
async fn committed_orders_survive_closing_the_pool_and_reconnecting() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let (store, batch) = store_with_orders(&schema, 3).await;
    store.close().await;
    drop(store);

    let store = schema.store().await;
    assert!(store.migrate().await.unwrap().is_empty());
    for accepted in &batch {
        assert_eq!(store.get_order(accepted.order.id).await.unwrap(), Some(accepted.order.clone()));
    }
    let products = store.load_products().await.unwrap();
    assert_eq!(products[0].reserved, 3);
    assert_eq!(store.outbox_len().await.unwrap(), 3);
    store.check_writable().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_database_is_reported_as_unavailable() {
    let err = PostgresStore::connect(
        "postgres://postgres@127.0.0.1:1/test",
        None,
        2,
        DEFAULT_QUERY_TIMEOUT,
    )
    .await
    .unwrap_err();
    let StoreError::Unavailable(message) = &err else {
        panic!("expected Unavailable, got {err:?}")
    };
    assert!(message.contains("127.0.0.1:1/test"), "names the target: {message}");
    assert!(message.contains("check"), "says what to check: {message}");
}

#[tokio::test]
async fn a_batch_of_500_orders_commits_in_one_call() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    shared_contract::a_batch_of_500_orders_commits_in_one_call(schema.migrated_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_committing_the_same_skus_at_once_both_land() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let a = schema.migrated_store().await;
    shared_contract::two_nodes_committing_the_same_skus_at_once_both_land(a, schema.store().await)
        .await;
}

/// The machine's time in Unix milliseconds: partitions follow the database's real clock.
fn now_millis() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

/// The partitions of `table`, by name.
async fn partitions(conn: &mut sqlx::PgConnection, table: &str) -> HashSet<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = $1::regclass",
    )
    .bind(table)
    .fetch_all(conn)
    .await
    .unwrap()
    .into_iter()
    .collect()
}

/// `table_pYYYYMMDD` for `days` from today, UTC.
fn daily(table: &str, days: i64) -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
        as i64
        + days * 86_400;
    // Civil date from days since the epoch (Howard Hinnant's algorithm), to stay off a date
    // crate for one test.
    let z = secs.div_euclid(86_400) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{table}_p{year:04}{month:02}{day:02}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_and_processed_events_are_partitioned_by_day_and_kept_ahead() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let (store, batch) = store_with_orders(&schema, 3).await;
    let mut conn = raw(&schema).await;
    for table in ["orders", "processed_events"] {
        let parts = partitions(&mut conn, table).await;
        for days in 1..=7 {
            assert!(parts.contains(&daily(table, days)), "{table}: {parts:?}");
        }
        assert!(parts.contains(&format!("{table}_default")), "{table}: {parts:?}");
    }
    // Maintenance puts back a day that went missing, and leaves the rest alone.
    let gone = daily("orders", 7);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP TABLE {gone}")))
        .execute(&mut conn)
        .await
        .unwrap();
    let done = store.maintain(Duration::from_secs(30 * 86_400)).await.unwrap();
    assert_eq!(done.created, vec![gone.clone()]);
    assert!(done.dropped.is_empty(), "nothing is past its retention yet: {done:?}");
    assert!(partitions(&mut conn, "orders").await.contains(&gone));
    // Every orders partition, made by the migrations or by maintenance, leaves room on its
    // pages for consumers' updates to stay HOT (0009).
    let roomy: Vec<(String, Option<Vec<String>>)> = sqlx::query_as(
        "SELECT c.relname::text, c.reloptions FROM pg_inherits i
         JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'orders'::regclass",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(roomy.len() >= 9, "{roomy:?}");
    for (name, options) in &roomy {
        assert_eq!(options.as_deref(), Some(&["fillfactor=50".to_owned()][..]), "{name}");
    }

    // The orders committed today are where the store reads and changes them.
    let first = &batch[0];
    let found = store.get_order(first.order.id).await.unwrap().unwrap();
    assert_eq!(found.id, first.order.id);
    let deduct = contract::effect(
        &OrderIdGenerator::new(),
        "inventory",
        first.event_id,
        first.order.id,
        Some(ordermill_core::Fact::StockDeducted),
    );
    store.apply_effects(vec![deduct]).await.unwrap();
    assert_eq!(store.processed("inventory", vec![first.event_id]).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_beyond_every_daily_partition_lands_in_the_default_one_and_works() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let store = schema.migrated_store().await;
    store.upsert_product(&product("o1", 10)).await.unwrap();
    // A node whose clock runs 60 days ahead.
    let ids = OrderIdGenerator::new();
    let later = UnixMillis(now_millis() + 60 * 86_400_000);
    let mut ahead = contract::accepted(&ids, &[("o1", 2)], Some("far-key"));
    ahead.order.id = ids.next(later);
    ahead.event_id = ids.next_uuid(later);
    store.commit_orders(Arc::new(vec![ahead.clone()])).await.unwrap();
    let mut conn = raw(&schema).await;
    let placed: String =
        sqlx::query_scalar("SELECT tableoid::regclass::text FROM orders WHERE id = $1")
            .bind(ahead.order.id.as_uuid())
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(placed, "orders_default");
    let customer = ahead.order.customer_id.clone();
    let key = ahead.order.idempotency_key.clone().unwrap();
    let again = store.find_by_idempotency_key(&customer, &key).await.unwrap().unwrap();
    assert_eq!(again.id, ahead.order.id);
    let effect = contract::effect(
        &ids,
        "inventory",
        ahead.event_id,
        ahead.order.id,
        Some(ordermill_core::Fact::StockDeducted),
    );
    store.apply_effects(vec![effect]).await.unwrap();
    let product = store.get_product(&Sku::parse("o1").unwrap()).await.unwrap().unwrap();
    assert_eq!((product.stock.get(), product.reserved), (8, 0));
    // Its key is still one per customer: a second order under it is refused whole.
    let mut twin = contract::accepted(&ids, &[("o1", 1)], Some("far-key"));
    twin.order.customer_id = customer.clone();
    assert!(matches!(
        store.commit_orders(Arc::new(vec![twin])).await,
        Err(StoreError::Conflict(_))
    ));
    // Maintenance still runs: the default holds no row of a day it would create.
    store.maintain(Duration::from_secs(30 * 86_400)).await.unwrap();
}

/// The effects' lock statement prunes partitions by the batch's id range: a batch whose
/// orders live in today's, tomorrow's and the default partition must still find every one.
/// `consumer`'s effect of `fact` on each of `orders`' order.created events, in that order.
fn effects_on(
    ids: &OrderIdGenerator,
    orders: &[AcceptedOrder],
    consumer: &str,
    fact: ordermill_core::Fact,
) -> Vec<ordermill_core::ports::Effect> {
    orders
        .iter()
        .map(|o| contract::effect(ids, consumer, o.event_id, o.order.id, Some(fact)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_effect_batch_over_orders_in_several_partitions_applies_to_each() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let store = schema.migrated_store().await;
    store.upsert_product(&product("p1", 10)).await.unwrap();
    let ids = OrderIdGenerator::new();
    let now = now_millis();
    let mut orders = Vec::new();
    for days_ahead in [0, 1, 60] {
        let at = UnixMillis(now + days_ahead * 86_400_000);
        let mut order = contract::accepted(&ids, &[("p1", 1)], None);
        order.order.id = ids.next(at);
        order.event_id = ids.next_uuid(at);
        orders.push(order);
    }
    store.commit_orders(Arc::new(orders.clone())).await.unwrap();
    let mut conn = raw(&schema).await;
    let placed: HashSet<String> = sqlx::query_scalar(
        "SELECT tableoid::regclass::text FROM orders WHERE id = ANY($1::uuid[])",
    )
    .bind(orders.iter().map(|o| o.order.id.as_uuid()).collect::<Vec<_>>())
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(placed.len(), 3, "the fixture must span three partitions: {placed:?}");
    // Listed latest first: the batch's order is not the ids' order.
    let latest_first: Vec<_> = orders.iter().rev().cloned().collect();
    let effects = effects_on(&ids, &latest_first, "inventory", ordermill_core::Fact::StockDeducted);
    let outcomes = store.apply_effects(effects).await.unwrap();
    assert!(
        outcomes.iter().all(|o| matches!(o, ordermill_core::ports::EffectOutcome::Applied { .. })),
        "every order is found and changed: {outcomes:?}"
    );
    let product = store.get_product(&Sku::parse("p1").unwrap()).await.unwrap().unwrap();
    assert_eq!((product.stock.get(), product.reserved), (7, 0));
}

/// An order's first payment outcome is inserted without a conflict check. A row its order's
/// state says is not there yet (nothing ordermill writes leaves one) fails that insert; the
/// batch is then done again checked and replaces the row instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_row_the_order_does_not_expect_is_replaced_not_a_failure() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let (store, orders) = store_with_orders(&schema, 2).await;
    let mut conn = raw(&schema).await;
    sqlx::query(
        "INSERT INTO payments (order_id, status, event_id, at) VALUES ($1, 'declined', $2, 0)",
    )
    .bind(orders[0].order.id.as_uuid())
    .bind(Uuid::now_v7())
    .execute(&mut conn)
    .await
    .unwrap();
    let ids = OrderIdGenerator::new();
    let paid = effects_on(&ids, &orders, "payment", ordermill_core::Fact::PaymentSucceeded);
    let outcomes = store.apply_effects(paid).await.unwrap();
    assert!(
        outcomes.iter().all(|o| matches!(o, ordermill_core::ports::EffectOutcome::Applied { .. })),
        "both payments apply: {outcomes:?}"
    );
    let statuses: Vec<String> = sqlx::query_scalar(
        "SELECT status FROM payments WHERE order_id = ANY($1) ORDER BY order_id",
    )
    .bind(orders.iter().map(|o| o.order.id.as_uuid()).collect::<Vec<_>>())
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(statuses, ["succeeded", "succeeded"]);
}

/// Rows in the outbox, not events: a batch row holds a transaction's events.
async fn outbox_rows(schema: &TestSchema) -> i64 {
    let mut conn = raw(schema).await;
    sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(&mut conn).await.unwrap()
}

fn event_ids(orders: &[AcceptedOrder]) -> Vec<Uuid> {
    orders.iter().map(|o| o.event_id).collect()
}

/// Each group commit's order.created events are one outbox row (0011). A claim takes rows
/// whole, oldest first, until it has as many events as asked; it hands them out one by one,
/// in the order they were committed, with bodies rebuilt from the orders; publishing them
/// deletes their rows and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_s_events_are_one_outbox_row_claimed_and_published_whole() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let store = schema.migrated_store().await;
    store.upsert_product(&product("o1", 1_000)).await.unwrap();
    let ids = OrderIdGenerator::new();
    let mut commits = Vec::new();
    for size in [5, 3, 4] {
        let batch: Vec<AcceptedOrder> =
            (0..size).map(|_| contract::accepted(&ids, &[("o1", 1)], None)).collect();
        store.commit_orders(Arc::new(batch.clone())).await.unwrap();
        commits.push(batch);
    }
    assert_eq!(outbox_rows(&schema).await, 3, "one row per commit");
    assert_eq!(store.outbox_len().await.unwrap(), 12, "every event counts");

    let claimed =
        store.claim_unpublished(6, Duration::ZERO, Duration::from_secs(600)).await.unwrap();
    let expected: Vec<Uuid> = commits[..2].iter().flat_map(|c| event_ids(c)).collect();
    let got: Vec<Uuid> = claimed.iter().map(|e| e.event_id).collect();
    assert_eq!(got, expected, "the first two rows whole (5 + 3 for 6 asked), in commit order");
    for (event, accepted) in claimed.iter().zip(commits[..2].iter().flatten()) {
        assert_eq!(&*event.routing_key, "order.created");
        assert_eq!(
            &*event.payload,
            ordermill_core::OutboxEvent::order_created(&accepted.order, accepted.event_id).payload
        );
    }
    let rest = store.claim_unpublished(1, Duration::ZERO, Duration::from_secs(600)).await.unwrap();
    assert_eq!(
        rest.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        event_ids(&commits[2]),
        "a row bigger than the claim still goes whole"
    );

    store.mark_published(got).await.unwrap();
    assert_eq!(outbox_rows(&schema).await, 1);
    assert_eq!(store.outbox_len().await.unwrap(), 4);
    store.release_claims(event_ids(&commits[2])).await.unwrap();
    let again =
        store.claim_unpublished(100, Duration::ZERO, Duration::from_secs(600)).await.unwrap();
    assert_eq!(again.len(), 4, "a released row is claimable at once");
}

/// Marking part of a batch row published takes exactly those events out of it: the rest stay,
/// in order, claimable and releasable (the row is keyed by its first event left), and the row
/// goes once its last event is marked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn marking_part_of_a_batch_row_publishes_only_those_events() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let (store, orders) = store_with_orders(&schema, 4).await;
    let ev = event_ids(&orders);
    store.mark_published(vec![ev[1], ev[3]]).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), 2);
    let claimed =
        store.claim_unpublished(10, Duration::ZERO, Duration::from_secs(600)).await.unwrap();
    assert_eq!(claimed.iter().map(|e| e.event_id).collect::<Vec<_>>(), vec![ev[0], ev[2]]);
    assert_eq!(
        &*claimed[1].payload,
        ordermill_core::OutboxEvent::order_created(&orders[2].order, ev[2]).payload
    );

    store.mark_published(vec![ev[0]]).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), 1);
    store.release_claims(vec![ev[2]]).await.unwrap();
    let left = store.claim_unpublished(10, Duration::ZERO, Duration::from_secs(600)).await.unwrap();
    assert_eq!(left.iter().map(|e| e.event_id).collect::<Vec<_>>(), vec![ev[2]]);

    // Marked twice (a relay that published it again): nothing else is touched.
    store.mark_published(vec![ev[0], ev[1]]).await.unwrap();
    assert_eq!(store.outbox_len().await.unwrap(), 1);
    store.mark_published(vec![ev[2]]).await.unwrap();
    assert_eq!(outbox_rows(&schema).await, 0);
}

/// The events one effect batch emits are one outbox row too, each with its own routing key
/// and body, claimed in the order the effects emitted them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_events_of_one_effect_batch_are_one_outbox_row() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let (store, orders) = store_with_orders(&schema, 3).await;
    store.mark_published(event_ids(&orders)).await.unwrap();
    let ids = OrderIdGenerator::new();
    let deducted = effects_on(&ids, &orders, "inventory", ordermill_core::Fact::StockDeducted);
    store.apply_effects(deducted).await.unwrap();
    let paid = effects_on(&ids, &orders, "payment", ordermill_core::Fact::PaymentSucceeded);
    let outcomes = store.apply_effects(paid).await.unwrap();
    let emitted: Vec<(Uuid, String, String)> = outcomes
        .iter()
        .flat_map(|o| match o {
            ordermill_core::ports::EffectOutcome::Applied { emitted, .. } => emitted.clone(),
            other => panic!("every payment applies: {other:?}"),
        })
        .map(|e| (e.event_id, e.routing_key.as_str().to_owned(), e.payload))
        .collect();
    assert!(emitted.len() >= 3, "each confirmed order emits its event: {emitted:?}");
    assert_eq!(outbox_rows(&schema).await, 1, "one row for the batch's events");
    let claimed =
        store.claim_unpublished(100, Duration::ZERO, Duration::from_secs(600)).await.unwrap();
    let got: Vec<(Uuid, String, String)> = claimed
        .iter()
        .map(|e| (e.event_id, e.routing_key.to_string(), e.payload.to_string()))
        .collect();
    assert_eq!(got, emitted);
}

/// A relay of the release before 0011, still running during a rolling upgrade, claims with
/// this statement. For a batch row it must find no body and no order (it then fails its claim,
/// publishing and deleting nothing), not the first order's event: it would publish that one
/// alone and delete the whole row.
const CLAIM_BEFORE_0011: &str = "
WITH claimable AS (
    SELECT event_id FROM outbox
    WHERE written_at <= now() AND (claimed_until IS NULL OR claimed_until <= now())
    ORDER BY event_id LIMIT 100 FOR UPDATE SKIP LOCKED
),
claimed AS (
    UPDATE outbox SET claimed_until = now() + interval '50 milliseconds'
    FROM claimable WHERE outbox.event_id = claimable.event_id
    RETURNING outbox.event_id, outbox.routing_key, outbox.payload, outbox.order_id
)
SELECT claimed.payload, orders.id
FROM claimed LEFT JOIN orders ON claimed.payload IS NULL AND orders.id = claimed.order_id";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_release_s_relay_finds_no_event_it_could_half_publish_in_a_batch_row() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let (store, orders) = store_with_orders(&schema, 3).await;
    let mut conn = raw(&schema).await;
    let old: Vec<(Option<String>, Option<Uuid>)> =
        sqlx::query_as(CLAIM_BEFORE_0011).fetch_all(&mut conn).await.unwrap();
    assert_eq!(old, vec![(None, None)], "one row, with neither a body nor an order");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let claimed = loop {
        let claimed =
            store.claim_unpublished(10, Duration::ZERO, Duration::from_secs(600)).await.unwrap();
        if !claimed.is_empty() || std::time::Instant::now() > deadline {
            break claimed;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        claimed.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        event_ids(&orders),
        "once the old claim's lease lapses, a new relay gets every event"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processed_events_partitions_past_their_retention_are_dropped_whole() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let (store, batch) = store_with_orders(&schema, 2).await;
    let ids = OrderIdGenerator::new();
    let effects = batch
        .iter()
        .map(|a| contract::effect(&ids, "notify", a.event_id, a.order.id, None))
        .collect();
    store.apply_effects(effects).await.unwrap();
    let events: Vec<Uuid> = batch.iter().map(|a| a.event_id).collect();
    assert_eq!(store.processed("notify", events.clone()).await.unwrap().len(), 2);
    // The shortest retention allowed keeps them: they are younger than it.
    let done = store.maintain(Duration::ZERO).await.unwrap();
    assert!(done.dropped.is_empty(), "{done:?}");
    assert_eq!(store.processed("notify", events.clone()).await.unwrap().len(), 2);
    // Ten days on (the cutoff moved instead of the clock), their partition goes whole; the
    // DEFAULT and the orders stay.
    let mut conn = raw(&schema).await;
    let dropped: Vec<String> =
        sqlx::query_scalar("SELECT ordermill_drop_processed_before(now() + interval '10 days')")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(!dropped.is_empty() && !dropped.iter().any(|d| d.ends_with("_default")), "{dropped:?}");
    assert!(store.processed("notify", events).await.unwrap().is_empty());
    assert!(store.get_order(batch[0].order.id).await.unwrap().is_some());
    assert!(partitions(&mut conn, "processed_events").await.contains("processed_events_default"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_holds_every_node_to_a_per_customer_limit() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    shared_contract::the_store_holds_every_node_to_a_per_customer_limit(
        schema.migrated_store().await,
    )
    .await;
}

/// Pooled connections are pinged only after an idle spell (not before every transaction), so
/// one the server dropped while the pool sat idle — a restart, an idle timeout — is found and
/// replaced before a transaction uses it.
#[tokio::test]
async fn a_connection_the_server_dropped_while_idle_is_replaced_before_use() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    schema.migrated_store().await;
    let app = format!("om_idle_{}", Uuid::now_v7().simple());
    let marked =
        format!("{url}{}application_name={app}", if url.contains('?') { '&' } else { '?' });
    let store = PostgresStore::connect(&marked, Some(&schema.name), 4, DEFAULT_QUERY_TIMEOUT)
        .await
        .unwrap();
    store.load_products().await.unwrap();

    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&url).await.unwrap();
    let killed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE application_name = $1) AS t",
    )
    .bind(&app)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(killed > 0, "the pool had a connection to drop");
    for _ in 0..100 {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(&app)
                .fetch_one(&mut admin)
                .await
                .unwrap();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    store.load_products().await.expect("the dead idle connection was replaced, not used");
}

/// A store whose calls are cut off after 500 ms, selling `sku` (1,000 units), and a connection
/// holding that product's row locked in a transaction it has not ended.
async fn a_held_product_row(
    url: &str,
    sku: &str,
) -> (TestSchema, PostgresStore, sqlx::PgConnection) {
    let schema = TestSchema::new(url);
    schema.migrated_store().await.upsert_product(&product(sku, 1_000)).await.unwrap();
    let timeout = Duration::from_millis(500);
    let store = PostgresStore::connect(url, Some(&schema.name), 4, timeout).await.unwrap();
    let mut holder = raw(&schema).await;
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT 1 FROM products WHERE sku = $1 FOR UPDATE")
        .bind(sku)
        .execute(&mut holder)
        .await
        .unwrap();
    (schema, store, holder)
}

/// See [`shared_contract::a_commit_cut_off_by_its_deadline_is_read_back_only_once_it_has_ended`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cut_off_by_its_deadline_is_read_back_only_once_it_has_ended() {
    let Some(url) = postgres_url() else { return };
    let (_schema, store, mut holder) = a_held_product_row(&url, "o1").await;
    let release = async {
        sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    };
    shared_contract::a_commit_cut_off_by_its_deadline_is_read_back_only_once_it_has_ended(
        &store,
        "postgres.query_timeout",
        release,
    )
    .await;
}

/// A group commit cut off while it waited for a product row, whose backend is woken when the
/// row's holder ends but does not run at once (a busy server; here it is stopped with SIGSTOP):
/// meanwhile a newcomer is granted the row, so a read-back that only waited for the row's lock
/// answered "not stored", and the commit landed a moment later — an order answered 503 "not
/// taken" that exists. The read-back must wait for the commit itself. Needs the PostgreSQL
/// server on this machine and the right to signal its processes (root, as in CI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_back_waits_for_a_commit_woken_but_not_yet_run() {
    let Some(url) = postgres_url() else { return };
    let (schema, store, mut holder) = a_held_product_row(&url, "w1").await;
    let holder_pid: i32 =
        sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut holder).await.unwrap();
    let ids = OrderIdGenerator::new();
    let batch = vec![contract::accepted(&ids, &[("w1", 3)], None)];
    let cut_off = store.commit_orders(Arc::new(batch.clone())).await;
    assert!(matches!(cut_off, Err(StoreError::Unavailable(_))), "{cut_off:?}");

    // The abandoned commit's backend, still waiting behind the holder.
    let mut admin = raw(&schema).await;
    let waiter: i32 = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)) LIMIT 1",
    )
    .bind(holder_pid)
    .fetch_one(&mut admin)
    .await
    .expect("the cut-off commit still waits on the server");
    let stopped = Stopped::new(waiter);
    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();

    let read = store.batch_stored(&batch).await;
    assert!(
        !matches!(read, Ok(false)),
        "answered 'not stored' while the commit that stores it was still to run"
    );
    drop(stopped);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let stored = loop {
        match store.batch_stored(&batch).await {
            Ok(stored) => break stored,
            Err(error) => {
                assert!(std::time::Instant::now() < deadline, "no answer: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(stored, "the commit, once it ran, landed");
    let found = store.get_order(batch[0].order.id).await.unwrap();
    assert!(found.is_some());
    assert_eq!(store.load_products().await.unwrap()[0].reserved, 3);
}

/// A PostgreSQL backend stopped with SIGSTOP until dropped (then SIGCONT, whatever happened).
struct Stopped(i32);

impl Stopped {
    fn new(pid: i32) -> Stopped {
        let status = std::process::Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(
            status.success(),
            "cannot stop PostgreSQL backend {pid}: is the server local, and are we root?"
        );
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill").args(["-CONT", &self.0.to_string()]).status();
    }
}

/// See [`shared_contract::many_more_callers_than_connections_are_all_served`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_more_callers_than_connections_are_all_served() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    schema.migrated_store().await;
    let store =
        PostgresStore::connect(&url, Some(&schema.name), 2, DEFAULT_QUERY_TIMEOUT).await.unwrap();
    shared_contract::many_more_callers_than_connections_are_all_served(store).await;
}

/// `url` with its host and port replaced by `127.0.0.1:{port}` (user, database and query kept).
fn through(url: &str, port: u16) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let user = authority.rsplit_once('@').map_or(String::new(), |(user, _)| format!("{user}@"));
    format!("{scheme}://{user}127.0.0.1:{port}{path}")
}

/// `url` with `param` added to its query.
fn with_param(url: &str, param: &str) -> String {
    format!("{url}{}{param}", if url.contains('?') { '&' } else { '?' })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sslmode_verify_full_goes_over_tls_checked_against_sslrootcert_and_not_without_it() {
    let Some(url) = postgres_url() else { return };
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let ca = ordermill_tls_testkit::TestCa::new();
    let (port, relayed) =
        ca.front_postgres(format!("{}:{}", options.get_host(), options.get_port())).await;
    let ca_file = ca.pem_file();
    let front = through(&url, port);
    let connect = |url: String, schema: String| async move {
        PostgresStore::connect(&url, Some(&schema), 2, DEFAULT_QUERY_TIMEOUT).await
    };
    let schema = TestSchema::new(&url);

    let verified =
        with_param(&front, &format!("sslmode=verify-full&sslrootcert={}", ca_file.display()));
    let store = connect(verified, schema.name.clone()).await.unwrap();
    store.migrate().await.unwrap();
    store.upsert_product(&product("tls", 5)).await.unwrap();
    assert!(relayed.load(std::sync::atomic::Ordering::Relaxed) >= 1, "it went through TLS");
    // The same row, read over a plain connection to the server behind the front.
    let plain = schema.store().await;
    let sku = Sku::parse("tls").unwrap();
    assert_eq!(plain.get_product(&sku).await.unwrap().map(|p| p.stock.get()), Some(5));

    // The test's CA is not one the driver trusts by itself: no connection, and the error says
    // what to add.
    let Err(err) = connect(with_param(&front, "sslmode=verify-full"), schema.name.clone()).await
    else {
        panic!("a certificate no trusted CA signed was accepted")
    };
    assert!(matches!(&err, StoreError::Unavailable(why) if why.contains("sslrootcert")), "{err:?}");
    // Without sslmode, no TLS is tried: the front, which speaks only TLS, drops the session.
    assert!(connect(front.clone(), schema.name.clone()).await.is_err());
}
