//! The SQLite backend passes the store contract, and what it commits survives a reopen.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;

use ordermill_core::OrderIdGenerator;
use ordermill_core::ports::OrderStore;
use ordermill_store::{SqliteStore, contract};

#[tokio::test]
async fn sqlite_store_honours_the_store_contract() {
    let dir = tempfile::tempdir().unwrap();
    contract::run_all(Arc::new(SqliteStore::open(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_honours_the_deal_contract() {
    let dir = tempfile::tempdir().unwrap();
    ordermill_store::deal_contract::run_all(Arc::new(SqliteStore::open(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_honours_the_report_contract() {
    let dir = tempfile::tempdir().unwrap();
    ordermill_store::report_contract::run_all(Arc::new(SqliteStore::open(dir.path()).unwrap()))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_files_in_a_directory_honour_the_contract() {
    let (dir, scratch) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let files = ordermill_store::files::DirReportFiles::open(dir.path().join("reports")).unwrap();
    ordermill_store::report_contract::files_contract(&files, scratch.path()).await;
}

#[tokio::test]
async fn committed_orders_survive_closing_and_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let ids = OrderIdGenerator::new();
    let order = contract::accepted(&ids, &[("s1", 2)], Some("k1"));
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        let product = ordermill_core::Product {
            sku: ordermill_core::Sku::parse("s1").unwrap(),
            name: ordermill_core::ProductName::parse("S").unwrap(),
            price: ordermill_core::Money::parse("p", "2.50").unwrap(),
            stock: ordermill_core::StockLevel::parse(5).unwrap(),
            reserved: 0,
        };
        store.upsert_product(&product).await.unwrap();
        store.commit_orders(Arc::new(vec![order.clone()])).await.unwrap();
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.get_order(order.order.id).await.unwrap(), Some(order.order));
    let products = store.load_products().await.unwrap();
    assert_eq!(products[0].reserved, 2);
    assert_eq!(products[0].available(), 3);
}

/// Intake first: an order commit that arrives while consumer batches are queued waits for the
/// consumer transaction in progress, not for every batch queued before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_commit_overtakes_queued_consumer_batches() {
    const BATCHES: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    store.upsert_product(&contract::product_for_tests("s1", 10)).await.unwrap();
    let ids = Arc::new(OrderIdGenerator::new());
    let now = ordermill_core::UnixMillis(1_790_000_000_000);
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    // Built before any is sent, so they queue up together.
    let all: Vec<Vec<_>> = (0..BATCHES)
        .map(|_| {
            (0..256)
                .map(|_| contract::effect(&ids, "notify", ids.next_uuid(now), ids.next(now), None))
                .collect()
        })
        .collect();
    let mut batches = tokio::task::JoinSet::new();
    for effects in all {
        let (store, done) = (store.clone(), done.clone());
        batches.spawn(async move {
            store.apply_effects(effects).await.unwrap();
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
    }
    // The writer is busy with the batches once the first is written.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while done.load(std::sync::atomic::Ordering::SeqCst) == 0 {
        assert!(std::time::Instant::now() < deadline, "no consumer batch written within 30 s");
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let order = contract::accepted(&ids, &[("s1", 1)], None);
    store.commit_orders(Arc::new(vec![order])).await.unwrap();
    let before = done.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        before < BATCHES / 2,
        "the commit waited for {before} of {BATCHES} consumer batches queued before it"
    );
    while batches.join_next().await.is_some() {}
    assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), BATCHES);
}

#[tokio::test]
async fn opening_a_path_that_cannot_be_a_directory_says_which_path() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let err = SqliteStore::open(&file.path().join("sub")).unwrap_err();
    assert!(err.to_string().contains("cannot create data dir"), "{err}");
}

#[tokio::test]
async fn a_reopened_store_is_writable_before_its_first_commit() {
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path()).unwrap());
    // Closing removed the WAL; the readiness probe's empty transaction must not trip the
    // syncer into refusing writes.
    let store = SqliteStore::open(dir.path()).unwrap();
    store.check_writable().await.unwrap();
    store.check_writable().await.unwrap();
    let product = ordermill_core::Product {
        sku: ordermill_core::Sku::parse("s1").unwrap(),
        name: ordermill_core::ProductName::parse("S").unwrap(),
        price: ordermill_core::Money::parse("p", "2.50").unwrap(),
        stock: ordermill_core::StockLevel::parse(5).unwrap(),
        reserved: 0,
    };
    store.upsert_product(&product).await.unwrap();
}

#[tokio::test]
async fn records_of_events_older_than_the_cutoff_are_pruned_in_chunks_and_newer_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let ids = OrderIdGenerator::new();
    let day = 86_400_000;
    let cutoff = ordermill_core::UnixMillis(1_800_000_000_000);
    let old: Vec<_> =
        (1..=5).map(|n| ids.next_uuid(ordermill_core::UnixMillis(cutoff.0 - n * day))).collect();
    let new: Vec<_> =
        (0..3).map(|n| ids.next_uuid(ordermill_core::UnixMillis(cutoff.0 + n))).collect();
    let consumers = ["inventory", "notify", "payment"];
    {
        // Written as the consumers' effects write them; the store's API has no other way in.
        let conn =
            rusqlite::Connection::open(dir.path().join(ordermill_store::sqlite::DB_FILE)).unwrap();
        for consumer in consumers {
            for event in old.iter().chain(&new) {
                conn.execute(
                    "INSERT INTO processed_events (consumer, event_id) VALUES (?1, ?2)",
                    rusqlite::params![consumer, event.as_bytes()],
                )
                .unwrap();
            }
        }
    }

    // 15 old records in chunks of 4: every chunk full until the last, across consumers.
    let mut chunks = Vec::new();
    loop {
        let removed = store.prune_processed(cutoff, 4).await.unwrap();
        chunks.push(removed);
        if removed < 4 {
            break;
        }
    }
    assert_eq!(chunks, [4, 4, 4, 3]);
    for consumer in consumers {
        let all: Vec<_> = old.iter().chain(&new).copied().collect();
        assert_eq!(store.processed(consumer, all).await.unwrap(), new, "{consumer}");
    }
    assert_eq!(store.prune_processed(cutoff, 4).await.unwrap(), 0, "nothing left to prune");
}
