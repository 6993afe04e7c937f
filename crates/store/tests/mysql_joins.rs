//! Deal joins on MySQL: joins queued together on a node are written by one transaction, each
//! decided as it would be alone. Against the server named by `ORDERMILL_TEST_MYSQL_URL`, as
//! the contract tests.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::{Duration, Instant};

use ordermill_core::OrderIdGenerator;
use ordermill_core::ports::{DealStore, OrderStore};
use ordermill_store::deal_contract;

mod joins_support;
mod mysql_support;
use joins_support::{join_at_once, joining};
use mysql_support::{TestDb, mysql_url, product};

/// Joins that reach a node together are written by ONE transaction. The test holds the SKU's
/// product row, which a joins' transaction takes last (after writing the memberships), so the
/// group's transaction waits there; a READ UNCOMMITTED look then sees all four memberships
/// written and the store sees none committed. A build that committed each join alone would
/// show at most one written at a time, and fails here.
///
/// A current-thread runtime: every join is queued before the queue's task first runs.
#[tokio::test]
async fn joins_queued_together_are_written_by_one_transaction() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    let store = db.migrated_store().await;
    store.upsert_product(&product("j1", 100)).await.unwrap();
    let ids = OrderIdGenerator::new();
    let deal = deal_contract::deal(&ids, "j1", 10);
    store.create_deal(&deal).await.unwrap();
    let mut holder = db.raw().await;
    sqlx::raw_sql("BEGIN; SELECT 1 FROM products WHERE sku = 'j1' FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();
    let mut watcher = db.raw().await;
    sqlx::raw_sql("SET SESSION TRANSACTION ISOLATION LEVEL READ UNCOMMITTED")
        .execute(&mut watcher)
        .await
        .unwrap();

    let joins = ["ann", "bob", "cy", "dee"].map(|c| joining(&ids, &deal, c, None));
    let watch = async {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut most = 0;
        while most < 4 {
            let written: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM deal_members WHERE deal_id = ?")
                    .bind(deal.id.as_uuid())
                    .fetch_one(&mut watcher)
                    .await
                    .unwrap();
            most = most.max(written);
            assert!(
                Instant::now() < deadline,
                "at most {most} of 4 memberships were written at once: not one transaction"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let committed = store.get_deal(deal.id).await.unwrap().unwrap();
        assert!(committed.members.is_empty(), "committed before the product row was free");
        sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    };
    let (outcomes, ()) = tokio::join!(join_at_once(&store, joins.into()), watch);

    assert_eq!(outcomes, ["joined open awaiting_group 0"; 4]);
    assert_eq!(store.get_deal(deal.id).await.unwrap().unwrap().members.len(), 4);
    assert_eq!(store.load_products().await.unwrap()[0].reserved, 4);
}

/// See `joins_support`. A current-thread runtime, as above.
#[tokio::test]
async fn joins_queued_together_are_decided_in_order() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    joins_support::joins_queued_together_are_decided_in_order(&db.migrated_store().await).await;
}

/// See `joins_support`. A current-thread runtime, as above.
#[tokio::test]
async fn a_join_the_store_refuses_costs_its_group_mates_nothing() {
    let Some(url) = mysql_url() else { return };
    let db = TestDb::new(&url);
    joins_support::a_join_the_store_refuses_costs_its_group_mates_nothing(
        &db.migrated_store().await,
    )
    .await;
}
