//! Deal joins queued together on a node, checked the same way on both shared-server stores
//! (PostgreSQL, MySQL): each decided as it would be alone, in the order it came, and a join
//! the store refuses on its own account costing its group-mates nothing. How each engine shows
//! that the joins shared ONE transaction stays in its own test file.
//!
//! "At once" means queued before the store's join queue first runs: callers run these on a
//! current-thread runtime (`#[tokio::test]`), where every join below is queued before the
//! queue's task gets a turn, whatever the machine's speed.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report
#![allow(dead_code)] // each test file uses its own part of it

use ordermill_core::ports::{AcceptedOrder, DealStore, LimitStore, OrderStore};
use ordermill_core::{
    CustomerId, Deal, DealStatus, IdempotencyKey, JoinRefusal, OrderIdGenerator, OrderStatus, Sku,
    UnixMillis,
};
use ordermill_store::contract::product_for_tests as product;
use ordermill_store::deal_contract;
use uuid::Uuid;

/// A join's arguments, as the server builds them.
pub struct Joining {
    pub deal: Deal,
    pub order: AcceptedOrder,
}

pub fn joining(ids: &OrderIdGenerator, deal: &Deal, customer: &str, key: Option<&str>) -> Joining {
    let mut order = deal_contract::member_order(ids, deal, customer);
    order.order.idempotency_key = key.map(|k| IdempotencyKey::parse(k).unwrap());
    Joining { deal: deal.clone(), order }
}

/// Every join sent at once; their outcomes described, in the order sent.
pub async fn join_at_once<S: DealStore>(store: &S, joins: Vec<Joining>) -> Vec<String> {
    let calls = joins.into_iter().map(|Joining { deal, order }| {
        let completion = (0..deal.group_size.get()).map(|_| Uuid::now_v7()).collect();
        store.join_deal(deal.id, order, completion, UnixMillis(deal.created_at.0 + 1))
    });
    futures_util::future::join_all(calls).await.iter().map(deal_contract::described).collect()
}

/// Seven joins at once on two deals of SKU `j1` and one unknown deal: a later join sees an
/// earlier one's membership, the join that fills a group completes it and moves every
/// member's order on, a join past a full group is refused, a second join of one customer is
/// refused, an unknown deal is not found, and `reserved` counts exactly the admitted joins.
/// The admitted customers are ann, bob and fay: the caller checks their rows came from one
/// transaction.
pub async fn joins_queued_together_are_decided_in_order<S>(store: &S)
where
    S: OrderStore + DealStore,
{
    store.upsert_product(&product("j1", 100)).await.unwrap();
    let ids = OrderIdGenerator::new();
    let pair = deal_contract::deal(&ids, "j1", 2);
    let trio = deal_contract::deal(&ids, "j1", 3);
    for deal in [&pair, &trio] {
        store.create_deal(deal).await.unwrap();
    }
    let unknown = deal_contract::deal(&ids, "j1", 2);

    let outcomes = join_at_once(
        store,
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
/// counting every node's orders) fails its group's transaction. Only it is refused: the joins
/// queued with it are decided again one per transaction, and every other one lands.
pub async fn a_join_the_store_refuses_costs_its_group_mates_nothing<S>(store: &S)
where
    S: OrderStore + DealStore + LimitStore,
{
    store.upsert_product(&product("j1", 100)).await.unwrap();
    store.set_purchase_limit(&Sku::parse("j1").unwrap(), Some(2)).await.unwrap();
    let ids = OrderIdGenerator::new();
    let first = deal_contract::deal(&ids, "j1", 5);
    let second = deal_contract::deal(&ids, "j1", 5);
    let third = deal_contract::deal(&ids, "j1", 5);
    for deal in [&first, &second, &third] {
        store.create_deal(deal).await.unwrap();
    }
    let earlier = join_at_once(store, vec![joining(&ids, &first, "dee", Some("k-dee"))]).await;
    assert_eq!(earlier, ["joined open awaiting_group 0"]);

    let outcomes = join_at_once(
        store,
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
