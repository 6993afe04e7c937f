//! Deal joins on PostgreSQL: joins queued together on a node are decided in one transaction,
//! each as it would be alone, and a join whose outcome is unclear is read back only once it
//! has ended. Against the server named by `ORDERMILL_TEST_POSTGRES_URL`, as the contract tests.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use ordermill_core::ports::{DealStore, OrderStore, StoreError};
use ordermill_core::{OrderIdGenerator, UnixMillis};
use ordermill_store::{PostgresStore, deal_contract};
use uuid::Uuid;

mod joins_support;
mod postgres_support;
use postgres_support::{TestSchema, postgres_url, product, raw};

/// How many transactions wrote the orders of `customers` (each row's `xmin`).
async fn transactions(schema: &TestSchema, customers: &[&str]) -> i64 {
    sqlx::query_scalar(
        "SELECT count(DISTINCT xmin::text) FROM orders WHERE customer_id = ANY($1::text[])",
    )
    .bind(customers)
    .fetch_one(&mut raw(schema).await)
    .await
    .unwrap()
}

/// Joins queued together are decided in order (`joins_support`), and their rows all carry one
/// `xmin`: one transaction wrote them. A build that commits each join alone fails here.
///
/// A current-thread runtime: every join is queued before the queue's task first runs, so
/// they form one group whatever the machine's speed.
#[tokio::test]
async fn joins_queued_together_share_one_transaction_and_are_decided_in_order() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let store = schema.migrated_store().await;
    joins_support::joins_queued_together_are_decided_in_order(&store).await;
    assert_eq!(transactions(&schema, &["ann", "bob", "fay"]).await, 1);
}

/// See `joins_support`. A current-thread runtime, as above.
#[tokio::test]
async fn a_join_the_store_refuses_costs_its_group_mates_nothing() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    joins_support::a_join_the_store_refuses_costs_its_group_mates_nothing(
        &schema.migrated_store().await,
    )
    .await;
}

/// A deal join whose COMMIT is held on the server (a deferred trigger waits on a row the test
/// locks) outlives its caller's 500 ms deadline: the call fails, and reading the join back
/// waits for that commit — which lands once the row is free — before it answers. A read that
/// did not wait would answer "not a member" just before the join landed, and the caller would
/// give back a unit that is sold.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_cut_off_by_its_deadline_is_read_back_only_once_it_has_ended() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let setup = schema.migrated_store().await;
    setup.upsert_product(&product("j1", 10)).await.unwrap();
    let ids = OrderIdGenerator::new();
    let deal = deal_contract::deal(&ids, "j1", 3);
    setup.create_deal(&deal).await.unwrap();
    let mut holder = raw(&schema).await;
    // The schema's name is the test's own uuid-based identifier.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        r#"CREATE TABLE gate (id int PRIMARY KEY); INSERT INTO gate VALUES (1);
        CREATE FUNCTION "{s}".pass_gate() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM 1 FROM "{s}".gate WHERE id = 1 FOR UPDATE; RETURN NULL; END $$;
        CREATE CONSTRAINT TRIGGER held_at_commit AFTER INSERT ON deal_members
            DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION "{s}".pass_gate();"#,
        s = schema.name
    )))
    .execute(&mut holder)
    .await
    .unwrap();
    sqlx::raw_sql("BEGIN; SELECT 1 FROM gate WHERE id = 1 FOR UPDATE")
        .execute(&mut holder)
        .await
        .unwrap();

    let store = PostgresStore::connect(&url, Some(&schema.name), 4, Duration::from_millis(500))
        .await
        .unwrap();
    let member = deal_contract::member_order(&ids, &deal, "ann");
    let order_id = member.order.id;
    let completion = (0..3).map(|_| Uuid::now_v7()).collect();
    let err = store.join_deal(deal.id, member, completion, UnixMillis(deal.created_at.0 + 1)).await;
    let Err(StoreError::Unavailable(message)) = &err else {
        panic!("expected Unavailable: {err:?}")
    };
    assert!(message.contains("a deal join"), "{message}");
    // The join's COMMIT still waits on the server: the read-back waits behind it.
    let read = store.joined_order(deal.id, order_id).await;
    assert!(
        matches!(read, Err(StoreError::Unavailable(_))),
        "no answer while the join may still land: {read:?}"
    );

    sqlx::raw_sql("COMMIT").execute(&mut holder).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let found = loop {
        match store.joined_order(deal.id, order_id).await {
            Ok(found) => break found,
            Err(error) => {
                assert!(std::time::Instant::now() < deadline, "no answer: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let order = found.expect("the held commit landed once its row was free");
    assert_eq!(order.id, order_id);
    let stored = store.get_deal(deal.id).await.unwrap().unwrap();
    assert_eq!(stored.members.len(), 1, "{stored:?}");
    assert_eq!(store.load_products().await.unwrap()[0].reserved, 1);
    // A join that never happened reads back as absent, at once.
    let stranger = deal_contract::member_order(&ids, &deal, "bob").order.id;
    assert!(store.joined_order(deal.id, stranger).await.unwrap().is_none());
}
