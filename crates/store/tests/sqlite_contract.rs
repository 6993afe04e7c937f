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
