//! Deal joins on PostgreSQL: joins queued together on a node are decided in one transaction,
//! each as it would be alone, and a join whose outcome is unclear is read back only once it
//! has ended. Against the server named by `ORDERMILL_TEST_POSTGRES_URL`, as the contract tests.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::time::Duration;

use ordermill_core::ports::{DealStore, LimitStore, OrderStore, StoreError};
use ordermill_core::{
    CustomerId, Deal, DealStatus, IdempotencyKey, JoinRefusal, OrderIdGenerator, OrderStatus, Sku,
    UnixMillis,
};
use ordermill_store::{PostgresStore, deal_contract};
use uuid::Uuid;

mod postgres_support;
use postgres_support::{TestSchema, postgres_url, product, raw};

/// A join's arguments, as the server builds them.
struct Joining {
    deal: Deal,
    order: ordermill_core::ports::AcceptedOrder,
}

fn joining(ids: &OrderIdGenerator, deal: &Deal, customer: &str, key: Option<&str>) -> Joining {
    let mut order = deal_contract::member_order(ids, deal, customer);
    order.order.idempotency_key = key.map(|k| IdempotencyKey::parse(k).unwrap());
    Joining { deal: deal.clone(), order }
}

/// Every join sent at once; their outcomes described, in the order sent.
async fn join_at_once(store: &PostgresStore, joins: Vec<Joining>) -> Vec<String> {
    let calls = joins.into_iter().map(|Joining { deal, order }| {
        let completion = (0..deal.group_size.get()).map(|_| Uuid::now_v7()).collect();
        store.join_deal(deal.id, order, completion, UnixMillis(deal.created_at.0 + 1))
    });
    futures_util::future::join_all(calls).await.iter().map(deal_contract::described).collect()
}

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

/// Joins that reach a node together share one transaction, one commit and one update of the
/// SKU's row, where each was its own and they queued on that row (docs/BENCHMARKS.md, "Group-
/// buying joins"). Each is still decided as it would be alone, in the order they came: a
/// later join sees an earlier one's membership, the join that fills a group completes it and
/// moves every member's order on, a join past a full group is refused, an unknown deal is
/// not found, and the SKU's `reserved` counts exactly the admitted joins.
///
/// A current-thread runtime: every join below is queued before the queue's task first runs,
/// so they form one group whatever the machine's speed.
#[tokio::test]
async fn joins_queued_together_share_one_transaction_and_are_decided_in_order() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let store = schema.migrated_store().await;
    store.upsert_product(&product("j1", 100)).await.unwrap();
    let ids = OrderIdGenerator::new();
    let pair = deal_contract::deal(&ids, "j1", 2);
    let trio = deal_contract::deal(&ids, "j1", 3);
    for deal in [&pair, &trio] {
        store.create_deal(deal).await.unwrap();
    }
    let unknown = deal_contract::deal(&ids, "j1", 2);

    let outcomes = join_at_once(
        &store,
        vec![
            joining(&ids, &pair, "ann", None),
            joining(&ids, &trio, "ann", Some("k-ann")),
            joining(&ids, &pair, "bob", None),
            joining(&ids, &pair, "cy", None),
            joining(&ids, &trio, "ann", None),
            joining(&ids, &unknown, "eve", None),
            joining(&ids, &trio, "fay", None),
        ],
    )
    .await;

    assert_eq!(
        outcomes,
        [
            "joined open awaiting_group 0".to_owned(),
            "joined open awaiting_group 0".to_owned(),
            "joined completed accepted 2".to_owned(),
            format!("refused {:?}", JoinRefusal::Full),
            format!("refused {:?}", JoinRefusal::AlreadyJoined),
            "not found".to_owned(),
            "joined open awaiting_group 0".to_owned(),
        ]
    );
    assert_eq!(transactions(&schema, &["ann", "bob", "fay"]).await, 1);
    assert_eq!(store.load_products().await.unwrap()[0].reserved, 4);
    let pair = store.get_deal(pair.id).await.unwrap().unwrap();
    assert_eq!(pair.status, DealStatus::Completed);
    for member in &pair.members {
        let order = store.get_order(member.order_id).await.unwrap().unwrap();
        assert_eq!(order.status, OrderStatus::Accepted, "{order:?}");
    }
    let trio = store.get_deal(trio.id).await.unwrap().unwrap();
    let members: Vec<&str> = trio.members.iter().map(|m| m.customer_id.as_str()).collect();
    assert_eq!(members, ["ann", "fay"]);
    assert_eq!(trio.status, DealStatus::Open);
}

/// A join the store must refuse on its own account (its idempotency key is stored already:
/// the same customer's retry through another node; or the customer is past the SKU's limit
/// counting every node's orders) fails its group's shared statement. Only it is refused: the
/// joins queued with it are decided again one per transaction, and every other one lands.
#[tokio::test]
async fn a_join_the_store_refuses_costs_its_group_mates_nothing() {
    let Some(url) = postgres_url() else { return };
    let schema = TestSchema::new(&url);
    let store = schema.migrated_store().await;
    store.upsert_product(&product("j1", 100)).await.unwrap();
    store.set_purchase_limit(&Sku::parse("j1").unwrap(), Some(2)).await.unwrap();
    let ids = OrderIdGenerator::new();
    let first = deal_contract::deal(&ids, "j1", 5);
    let second = deal_contract::deal(&ids, "j1", 5);
    let third = deal_contract::deal(&ids, "j1", 5);
    for deal in [&first, &second, &third] {
        store.create_deal(deal).await.unwrap();
    }
    let earlier = join_at_once(&store, vec![joining(&ids, &first, "dee", Some("k-dee"))]).await;
    assert_eq!(earlier, ["joined open awaiting_group 0"]);

    let outcomes = join_at_once(
        &store,
        vec![
            joining(&ids, &second, "gus", None),
            joining(&ids, &second, "dee", Some("k-dee")),
            joining(&ids, &second, "hal", None),
            joining(&ids, &first, "gus", None),
            joining(&ids, &third, "gus", None),
            joining(&ids, &second, "ivy", None),
        ],
    )
    .await;

    let joined = "joined open awaiting_group 0";
    assert_eq!([&outcomes[0], &outcomes[2], &outcomes[3], &outcomes[5]], [joined; 4]);
    assert!(outcomes[1].starts_with("failed conflict"), "{outcomes:?}");
    assert!(outcomes[4].starts_with("failed per-customer limit"), "{outcomes:?}");
    let members = |deal: Deal| -> Vec<String> {
        deal.members.iter().map(|m| m.customer_id.as_str().to_owned()).collect()
    };
    assert_eq!(members(store.get_deal(second.id).await.unwrap().unwrap()), ["gus", "hal", "ivy"]);
    assert_eq!(members(store.get_deal(first.id).await.unwrap().unwrap()), ["dee", "gus"]);
    assert!(store.get_deal(third.id).await.unwrap().unwrap().members.is_empty());
    assert_eq!(store.load_products().await.unwrap()[0].reserved, 5);
    // The key still names the order of the first join.
    let dee = CustomerId::parse("dee").unwrap();
    let key = IdempotencyKey::parse("k-dee").unwrap();
    let stored = store.find_by_idempotency_key(&dee, &key).await.unwrap().unwrap();
    let first = store.get_deal(first.id).await.unwrap().unwrap();
    assert_eq!(first.members[0].order_id, stored.id);
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
