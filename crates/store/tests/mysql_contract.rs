//! The MySQL backend passes the store, deal and report contracts against the real server
//! named by `ORDERMILL_TEST_MYSQL_URL` (MariaDB here; each test in a database of its own,
//! dropped at the end), and what only a shared server has: migrations run twice or at once,
//! outbox claims and commits from several nodes, leases that run out, the same event applied
//! by two nodes at once, daily partitions. Unset: the tests say why they skip — unless
//! `ORDERMILL_TEST_REQUIRE_SERVICES=1` (CI), where a skip is a failure.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;
use std::time::{Duration, Instant};

use ordermill_core::ports::{AcceptedOrder, EffectOutcome, OrderStore, StoreError};
use ordermill_core::{Fact, OrderIdGenerator, ProductName, Sku, UnixMillis};
use ordermill_store::mysql::DEFAULT_QUERY_TIMEOUT;
use ordermill_store::{MysqlStore, contract, deal_contract, shared_contract};
use sqlx::Connection;
use uuid::Uuid;

mod mysql_support;
use mysql_support::{TestDb, mysql_url, product};

const ALL_MIGRATIONS: [&str; 2] = ["0001_init", "0002_stock_returns"];

/// A store with product `o1` and `n` committed orders for it.
async fn store_with_orders(db: &TestDb, n: usize) -> (MysqlStore, Vec<AcceptedOrder>) {
    let store = db.migrated_store().await;
    store.upsert_product(&product("o1", 1_000_000)).await.unwrap();
    let ids = OrderIdGenerator::new();
    let batch: Vec<AcceptedOrder> =
        (0..n).map(|_| contract::accepted(&ids, &[("o1", 1)], None)).collect();
    store.commit_orders(Arc::new(batch.clone())).await.unwrap();
    (store, batch)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_store_honours_the_store_contract() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    contract::run_all(Arc::new(db.migrated_store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_store_honours_the_deal_contract() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    deal_contract::run_all(Arc::new(db.migrated_store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mysql_store_honours_the_report_contract() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    ordermill_store::report_contract::run_all(Arc::new(db.migrated_store().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_files_in_mysql_honour_the_contract() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    let scratch = tempfile::tempdir().unwrap();
    ordermill_store::report_contract::files_contract(&db.migrated_store().await, scratch.path())
        .await;
}

#[tokio::test]
async fn chinese_names_and_customers_round_trip_in_utf8mb4() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    let store = db.migrated_store().await;
    let mut tea = product("tea-1", 10);
    tea.name = ProductName::parse("西湖龙井 🍵 特级").unwrap();
    store.upsert_product(&tea).await.unwrap();
    let stored = store.get_product(&tea.sku).await.unwrap().unwrap();
    assert_eq!(stored.name.as_str(), "西湖龙井 🍵 特级");
    let ids = OrderIdGenerator::new();
    let order = contract::accepted_by(&ids, "顾客-张三", &[("tea-1", 2)], Some("key-1"));
    store.commit_orders(Arc::new(vec![order.clone()])).await.unwrap();
    assert_eq!(store.get_order(order.order.id).await.unwrap(), Some(order.order.clone()));
    let customer = order.order.customer_id.clone();
    let mine = store.orders_of_customer(&customer, None, 10).await.unwrap();
    assert_eq!(mine.len(), 1);
    // Binary collation: a customer id differing only in case is another customer.
    let other = ordermill_core::CustomerId::parse("顾客-張三").unwrap();
    assert!(store.orders_of_customer(&other, None, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_joining_one_deal_at_once_admit_exactly_its_group_size() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    let a = db.migrated_store().await;
    shared_contract::two_nodes_joining_one_deal_at_once_admit_exactly_its_group_size(
        a,
        db.store().await,
    )
    .await;
}

#[tokio::test]
async fn migrating_twice_applies_nothing_the_second_time() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    let store = db.store().await;
    assert_eq!(store.pending_migrations().await.unwrap(), ALL_MIGRATIONS);
    assert_eq!(store.migrate().await.unwrap(), ALL_MIGRATIONS);
    assert!(store.pending_migrations().await.unwrap().is_empty());
    assert!(store.migrate().await.unwrap().is_empty());
    store.upsert_product(&product("m1", 1)).await.unwrap();
    assert!(store.migrate().await.unwrap().is_empty(), "data does not matter to migrations");
    assert_eq!(store.load_products().await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_migrating_at_once_apply_each_migration_once() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    let (a, b) = (db.store().await, db.store().await);
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(
        ra.len() + rb.len(),
        ALL_MIGRATIONS.len(),
        "applied once between them: {ra:?} {rb:?}"
    );
    let mut conn = db.raw().await;
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schema_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(n, ALL_MIGRATIONS.len() as i64);
}

#[tokio::test]
async fn a_migration_interrupted_half_way_is_finished_by_the_next_run() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    let store = db.store().await;
    // What a crash after the first statements leaves: some tables, no record.
    let mut conn = db.raw().await;
    sqlx::raw_sql(
        "CREATE TABLE products (sku VARCHAR(64) NOT NULL PRIMARY KEY, name VARCHAR(200) NOT NULL,
         price_minor BIGINT NOT NULL, stock BIGINT NOT NULL, reserved BIGINT NOT NULL DEFAULT 0)
         DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(store.migrate().await.unwrap(), ALL_MIGRATIONS);
    store.upsert_product(&product("h1", 1)).await.unwrap();
}

#[tokio::test]
async fn connect_does_not_migrate() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    let store = db.store().await;
    let err = store.load_products().await.unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "no tables before migrate: {err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_claimers_never_get_the_same_event() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    let a = db.migrated_store().await;
    shared_contract::two_concurrent_claimers_never_get_the_same_event(a, db.store().await).await;
}

#[tokio::test]
async fn the_oldest_unpublished_event_s_age_grows_until_it_is_published() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    shared_contract::the_oldest_unpublished_event_s_age_grows_until_it_is_published(
        db.migrated_store().await,
    )
    .await;
}

#[tokio::test]
async fn a_return_of_units_is_noted_until_the_cache_has_them() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    shared_contract::a_return_of_units_is_noted_until_the_cache_has_them(db.migrated_store().await)
        .await;
}

#[tokio::test]
async fn an_expired_lease_makes_an_event_claimable_again() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    shared_contract::an_expired_lease_makes_an_event_claimable_again(db.migrated_store().await)
        .await;
}

#[tokio::test]
async fn an_unreachable_database_is_reported_as_unavailable() {
    let err = MysqlStore::connect("mysql://root@127.0.0.1:1/test", None, 2, DEFAULT_QUERY_TIMEOUT)
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
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    shared_contract::a_batch_of_500_orders_commits_in_one_call(db.migrated_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_committing_the_same_skus_at_once_both_land() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    let a = db.migrated_store().await;
    shared_contract::two_nodes_committing_the_same_skus_at_once_both_land(a, db.store().await)
        .await;
}

/// Two workers given the same deliveries at once (a redelivery racing its first delivery):
/// every effect lands exactly once between them, and neither sees an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_events_applied_by_two_nodes_at_once_take_effect_once() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    let (a, batch) = store_with_orders(&db, 40).await;
    let b = db.store().await;
    let ids = Arc::new(OrderIdGenerator::new());
    let effects: Vec<_> = batch
        .iter()
        .map(|o| {
            contract::effect(&ids, "inventory", o.event_id, o.order.id, Some(Fact::StockDeducted))
        })
        .collect();
    let (ra, rb) = tokio::join!(a.apply_effects(effects.clone()), b.apply_effects(effects));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let applied =
        ra.iter().chain(&rb).filter(|o| !matches!(o, EffectOutcome::AlreadyProcessed)).count();
    assert_eq!(applied, 40, "each effect once: {ra:?} {rb:?}");
    let o1 = a.get_product(&Sku::parse("o1").unwrap()).await.unwrap().unwrap();
    assert_eq!((o1.stock.get(), o1.reserved), (1_000_000 - 40, 0), "deducted once each");
}

/// The daily partitions names, of `table`.
async fn partitions(conn: &mut sqlx::MySqlConnection, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT PARTITION_NAME FROM information_schema.PARTITIONS
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = ? ORDER BY PARTITION_ORDINAL_POSITION",
    )
    .bind(table)
    .fetch_all(conn)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_and_processed_events_are_partitioned_by_day_and_kept_ahead() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    let (store, batch) = store_with_orders(&db, 3).await;
    let mut conn = db.raw().await;
    for table in ["orders", "processed_events"] {
        let parts = partitions(&mut conn, table).await;
        // Today through 7 days ahead, then the catch-all.
        assert_eq!(parts.len(), 9, "{table}: {parts:?}");
        assert_eq!(parts.last().map(String::as_str), Some("p_future"));
    }
    // Maintenance again: nothing new to make, nothing old enough to drop.
    let done = store.maintain(Duration::from_secs(7 * 86_400)).await.unwrap();
    assert!(done.created.is_empty() && done.dropped.is_empty(), "{done:?}");
    // An order far in the future lands in p_future and is found.
    let ids = OrderIdGenerator::new();
    let later = contract::accepted(&ids, &[("o1", 1)], None);
    let mut later = later;
    let far = ids.next(UnixMillis(later.order.created_at.0 + 400 * 86_400_000));
    later.order.id = far;
    store.commit_orders(Arc::new(vec![later.clone()])).await.unwrap();
    assert_eq!(store.get_order(far).await.unwrap().map(|o| o.id), Some(far));
    let in_future: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders PARTITION (p_future)")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(in_future, 1);
    assert!(store.get_order(batch[0].order.id).await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processed_events_partitions_past_their_retention_are_dropped_whole() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    let store = db.migrated_store().await;
    let mut conn = db.raw().await;
    // Ten days ago by the database's clock: split off a partition that old by hand, as one
    // left from earlier maintenance runs would be.
    let now: i64 = sqlx::query_scalar("SELECT CAST(UNIX_TIMESTAMP(NOW(3)) * 1000 AS SIGNED)")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let old_day = now / 86_400_000 - 10;
    let bound = uuid_at((old_day + 1) * 86_400_000);
    let first = partitions(&mut conn, "processed_events").await.remove(0);
    let name = format!("p{}", civil(old_day));
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE processed_events REORGANIZE PARTITION {first} INTO \
         (PARTITION {name} VALUES LESS THAN (X'{}'), PARTITION {first} VALUES LESS THAN (X'{}'))",
        bound.simple(),
        uuid_at((now / 86_400_000 + 1) * 86_400_000).simple(),
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let old_event = uuid_at(old_day * 86_400_000 + 1000);
    let recent_event = Uuid::now_v7();
    for event in [old_event, recent_event] {
        sqlx::query("INSERT INTO processed_events (consumer, event_id) VALUES ('notify', ?)")
            .bind(event)
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let done = store.maintain(Duration::from_secs(3 * 86_400)).await.unwrap();
    assert_eq!(done.dropped, [format!("processed_events_{name}")]);
    assert_eq!(
        store.processed("notify", vec![old_event, recent_event]).await.unwrap(),
        [recent_event]
    );
    assert!(!partitions(&mut conn, "processed_events").await.contains(&name));
}

/// The smallest UUIDv7 of millisecond `ms`.
fn uuid_at(ms: i64) -> Uuid {
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&u64::try_from(ms).unwrap().to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}

/// `YYYYMMDD` of a day since the epoch (UTC).
fn civil(day: i64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(u64::try_from(day).unwrap() * 86_400);
    humantime::format_rfc3339_seconds(at).to_string()[..10].replace('-', "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_holds_every_node_to_a_per_customer_limit() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    shared_contract::the_store_holds_every_node_to_a_per_customer_limit(db.migrated_store().await)
        .await;
}

/// InnoDB picks a consumer's batch as a deadlock's victim: the store runs the batch again and
/// it succeeds, instead of failing the effect. The other transaction is made the heavier one
/// (InnoDB rolls back the lighter), so the batch is the victim every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_chosen_as_a_deadlock_victim_is_run_again_and_lands_once() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    let (store, batch) = store_with_orders(&db, 1).await;
    let order = &batch[0];
    let mut raw = db.raw().await;
    sqlx::raw_sql("CREATE TABLE ballast (n INT)").execute(&mut raw).await.unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut raw).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO ballast WITH RECURSIVE s (n) AS
           (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 900) SELECT n FROM s",
    )
    .execute(&mut raw)
    .await
    .unwrap();
    sqlx::raw_sql("SELECT stock FROM products WHERE sku = 'o1' FOR UPDATE")
        .execute(&mut raw)
        .await
        .unwrap();
    // The batch locks its record and the order, then waits for the product row held above.
    let ids = OrderIdGenerator::new();
    let effect = contract::effect(
        &ids,
        "inventory",
        order.event_id,
        order.order.id,
        Some(Fact::StockDeducted),
    );
    let applying = tokio::spawn({
        let store = store.clone();
        async move { store.apply_effects(vec![effect]).await }
    });
    // Until InnoDB shows the batch waiting for that lock. Polled every 100 ms, not faster: with
    // a 10 ms poll of INNODB_TRX, MariaDB kept the batch idle in its transaction for the whole
    // 10 s (seen under `cargo test`), as if the reads of that table held it back.
    let mut watcher = sqlx::MySqlConnection::connect(&db.url).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM information_schema.INNODB_TRX t
             JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
             WHERE t.trx_state = 'LOCK WAIT' AND p.DB = ?",
        )
        .bind(&db.name)
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the batch never waited for the product row");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Closing the cycle: the order row the batch holds. InnoDB rolls the batch back (the
    // lighter transaction), so this lock is granted instead of waiting for ever.
    tokio::time::timeout(
        Duration::from_secs(8),
        sqlx::query("SELECT status FROM orders WHERE id = ? FOR UPDATE")
            .bind(order.order.id.as_uuid())
            .execute(&mut raw),
    )
    .await
    .expect("the deadlock was detected at once")
    .unwrap();
    sqlx::raw_sql("ROLLBACK").execute(&mut raw).await.unwrap();
    let outcomes = applying.await.unwrap().expect("the batch ran again and succeeded");
    assert!(!matches!(outcomes[0], EffectOutcome::AlreadyProcessed), "{outcomes:?}");
    let o1 = store.get_product(&Sku::parse("o1").unwrap()).await.unwrap().unwrap();
    assert_eq!((o1.stock.get(), o1.reserved), (1_000_000 - 1, 0), "deducted exactly once");
}

/// Pooled connections are pinged only after an idle spell (not before every transaction), so
/// one the server dropped while the pool sat idle — a restart, `wait_timeout` — is found and
/// replaced before a transaction uses it.
#[tokio::test]
async fn a_connection_the_server_dropped_while_idle_is_replaced_before_use() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    let store = db.migrated_store().await;
    store.load_products().await.unwrap();

    let mut admin = db.raw().await;
    let ours: u64 =
        sqlx::query_scalar("SELECT CONNECTION_ID()").fetch_one(&mut admin).await.unwrap();
    let pooled: Vec<i64> = sqlx::query_scalar(
        "SELECT id FROM information_schema.processlist WHERE db = ? AND id <> ?",
    )
    .bind(&db.name)
    .bind(ours)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!pooled.is_empty(), "the pool had a connection to drop");
    for id in pooled {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("KILL {id}"))).execute(&mut admin).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    store.load_products().await.expect("the dead idle connection was replaced, not used");
}

/// See [`shared_contract::a_commit_cut_off_by_its_deadline_is_read_back_only_once_it_has_ended`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_cut_off_by_its_deadline_is_read_back_only_once_it_has_ended() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    db.migrated_store().await.upsert_product(&product("o1", 1_000)).await.unwrap();
    let timeout = Duration::from_millis(500);
    let store = MysqlStore::connect(&url, Some(&db.name), 4, timeout).await.unwrap();
    let mut holder = db.raw().await;
    sqlx::raw_sql("BEGIN; SELECT 1 FROM products WHERE sku = 'o1' FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let release = async {
        sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    };
    shared_contract::a_commit_cut_off_by_its_deadline_is_read_back_only_once_it_has_ended(
        &store,
        "mysql.query_timeout",
        release,
    )
    .await;
}

/// See [`shared_contract::many_more_callers_than_connections_are_all_served`].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_more_callers_than_connections_are_all_served() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    db.migrated_store().await;
    let store = MysqlStore::connect(&url, Some(&db.name), 2, DEFAULT_QUERY_TIMEOUT).await.unwrap();
    shared_contract::many_more_callers_than_connections_are_all_served(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ssl_mode_verify_identity_goes_over_tls_checked_against_ssl_ca_and_not_without_it() {
    // A server of the test's own (the shared one runs without TLS); it needs only MariaDB's
    // binaries, which the MySQL tests' machines have.
    if mysql_url().is_none() {
        return;
    }
    let ca = ordermill_tls_testkit::TestCa::new();
    let ca_file = ca.pem_file();
    let server = ordermill_tls_testkit::mariadb::TlsMariadb::spawn(ca).await;
    let base = server.url();
    let connect = |url: String| async move {
        MysqlStore::connect(&url, Some("om_tls"), 2, DEFAULT_QUERY_TIMEOUT).await
    };

    let verified = format!("{base}?ssl-mode=VERIFY_IDENTITY&ssl-ca={}", ca_file.display());
    let store = connect(verified).await.unwrap();
    store.migrate().await.unwrap();
    store.upsert_product(&product("tls", 5)).await.unwrap();
    let sku = Sku::parse("tls").unwrap();
    assert_eq!(store.get_product(&sku).await.unwrap().map(|p| p.stock.get()), Some(5));

    // The test's CA is not one the driver trusts by itself: no connection, and the error says
    // what to add.
    let Err(err) = connect(format!("{base}?ssl-mode=VERIFY_IDENTITY")).await else {
        panic!("a certificate no trusted CA signed was accepted")
    };
    assert!(matches!(&err, StoreError::Unavailable(why) if why.contains("ssl-ca=PATH")), "{err:?}");
    // Without ssl-mode, no TLS is tried: this server, which takes only TLS, refuses it.
    let Err(err) = connect(base.clone()).await else {
        panic!("a plaintext connection reached a server that requires TLS")
    };
    assert!(matches!(&err, StoreError::Unavailable(_)), "{err:?}");
}
