//! The contract every [`DealStore`] and [`LimitStore`] backend must honour: joins decided one
//! at a time, a group completing exactly once, an expiry firing once, limits counted from
//! the orders. A backend's test calls [`run_all`] with a fresh, empty store.

use std::sync::Arc;

use ordermill_core::ports::{
    AcceptedOrder, DealStore, JoinOutcome, LimitStore, OrderStore, StoreError,
};
use ordermill_core::{
    CustomerId, Deal, DealId, DealStatus, GroupSize, JoinRefusal, Money, Order, OrderIdGenerator,
    OrderLine, OrderStatus, Product, ProductName, Quantity, RoutingKey, Sku, StatusChange,
    StockLevel, UnixMillis,
};
use uuid::Uuid;

const NOW: UnixMillis = UnixMillis(1_790_000_000_000);
const DEADLINE: UnixMillis = UnixMillis(NOW.0 + 60_000);

fn sku(s: &str) -> Sku {
    Sku::parse(s).expect("fixture sku is valid")
}

async fn product<S: OrderStore>(store: &S, s: &str, stock: i64) {
    let product = Product {
        sku: sku(s),
        name: ProductName::parse(format!("Product {s}")).expect("fixture name is valid"),
        price: Money::parse("price", "19.99").expect("fixture price is valid"),
        stock: StockLevel::parse(stock).expect("fixture stock is valid"),
        reserved: 0,
    };
    store.upsert_product(&product).await.expect("insert product");
}

/// An open deal on `s` for groups of `size`, created at the contract's fixed time.
pub fn deal(ids: &OrderIdGenerator, s: &str, size: i64) -> Deal {
    Deal {
        id: DealId::from_uuid(ids.next_uuid(NOW)),
        sku: sku(s),
        deal_price: Money::parse("deal_price", "9.90").expect("fixture price is valid"),
        group_size: GroupSize::parse(size).expect("fixture size is valid"),
        created_at: NOW,
        expires_at: DEADLINE,
        status: DealStatus::Open,
        members: Vec::new(),
    }
}

/// A member's order for `deal`, as the server builds it: one unit at the deal price, status
/// `awaiting_group`, its first history entry stored.
pub fn member_order(ids: &OrderIdGenerator, deal: &Deal, customer: &str) -> AcceptedOrder {
    let line = OrderLine::priced(
        deal.sku.clone(),
        Quantity::parse(1).expect("1 is a quantity"),
        deal.deal_price,
    )
    .expect("one unit fits");
    let order = Order {
        id: ids.next(NOW),
        customer_id: CustomerId::parse(customer).expect("fixture customer is valid"),
        total: line.line_total,
        lines: vec![line],
        status: OrderStatus::AwaitingGroup,
        created_at: NOW,
        idempotency_key: None,
        history: vec![StatusChange::new(OrderStatus::AwaitingGroup, NOW)],
        awaited_payment: None,
    };
    AcceptedOrder { order, event_id: ids.next_uuid(NOW) }
}

/// A join's outcome in a line a test can compare: `joined <deal status> <order status>
/// <orders the deal moved on>`, `refused <refusal>`, `not found` or `failed <error>`.
pub fn described(outcome: &Result<JoinOutcome, StoreError>) -> String {
    match outcome {
        Ok(JoinOutcome::Joined { deal, order, completed, .. }) => {
            format!("joined {} {} {}", deal.status.as_str(), order.status.as_str(), completed.len())
        }
        Ok(JoinOutcome::Refused(refusal)) => format!("refused {refusal:?}"),
        Ok(JoinOutcome::NotFound) => "not found".to_owned(),
        Err(error) => format!("failed {error}"),
    }
}

fn event_ids(n: usize) -> Vec<Uuid> {
    (0..n).map(|_| Uuid::now_v7()).collect()
}

async fn join<S: DealStore>(
    store: &S,
    ids: &OrderIdGenerator,
    deal: &Deal,
    customer: &str,
) -> JoinOutcome {
    let order = member_order(ids, deal, customer);
    store
        .join_deal(deal.id, order, event_ids(deal.group_size.get() as usize), NOW)
        .await
        .expect("join is decided")
}

/// Runs every check; panics (failing the calling test) on the first violation.
pub async fn run_all<S: OrderStore + DealStore + LimitStore>(store: Arc<S>) {
    a_deal_needs_a_product_and_reads_back(&*store).await;
    the_join_that_fills_the_group_completes_it_once(&*store).await;
    an_expiry_cancels_every_member_once(&*store).await;
    concurrent_joins_for_the_last_slots_admit_exactly_the_group(store.clone()).await;
    limits_are_stored_and_units_counted_per_customer(&*store).await;
    deals_are_listed_by_creation_time(&*store).await;
    a_join_reads_back_as_stored_or_absent(&*store).await;
}

async fn a_join_reads_back_as_stored_or_absent<S: OrderStore + DealStore>(store: &S) {
    product(store, "d9", 10).await;
    let ids = OrderIdGenerator::new();
    let d = deal(&ids, "d9", 2);
    store.create_deal(&d).await.expect("create");
    let joined = match join(store, &ids, &d, "a").await {
        JoinOutcome::Joined { order, .. } => order,
        other => panic!("join: {other:?}"),
    };
    let read = store.joined_order(d.id, joined.id).await.expect("read back");
    assert_eq!(read.map(|o| (o.id, o.status)), Some((joined.id, OrderStatus::AwaitingGroup)));
    let never = member_order(&ids, &d, "b").order.id;
    assert_eq!(store.joined_order(d.id, never).await.expect("read back"), None);
}

async fn deals_are_listed_by_creation_time<S: OrderStore + DealStore>(store: &S) {
    product(store, "listed", 10).await;
    let ids = OrderIdGenerator::new();
    // Thirty days after every other check's deals, a day apart.
    let day = 86_400_000;
    let start = UnixMillis(NOW.0 + 30 * day);
    let mut made = Vec::new();
    for i in 0..3 {
        let mut d = deal(&ids, "listed", 2);
        d.id = DealId::from_uuid(ids.next_uuid(UnixMillis(start.0 + i * day)));
        d.created_at = UnixMillis(start.0 + i * day);
        d.expires_at = UnixMillis(d.created_at.0 + 60_000);
        store.create_deal(&d).await.expect("create");
        made.push(d.id);
    }
    let range = (start, UnixMillis(start.0 + 3 * day));
    let page = store.deals_created(range, None, 2).await.expect("list");
    assert_eq!(page, vec![made[2], made[1]], "newest first, at most the limit");
    let rest = store.deals_created(range, Some(page[1]), 2).await.expect("list");
    assert_eq!(rest, vec![made[0]]);
    let narrow = (UnixMillis(start.0 + day), UnixMillis(start.0 + 2 * day));
    assert_eq!(
        store.deals_created(narrow, None, 10).await.expect("list"),
        vec![made[1]],
        "[from, to)"
    );
}

async fn a_deal_needs_a_product_and_reads_back<S: OrderStore + DealStore>(store: &S) {
    let ids = OrderIdGenerator::new();
    let ghost = deal(&ids, "no-such-sku", 2);
    let err = store.create_deal(&ghost).await.expect_err("unknown sku");
    assert!(matches!(err, StoreError::Conflict(_)), "got {err:?}");
    product(store, "d0", 10).await;
    let d = deal(&ids, "d0", 2);
    store.create_deal(&d).await.expect("create");
    assert_eq!(store.get_deal(d.id).await.expect("read"), Some(d));
    let missing = DealId::from_uuid(Uuid::now_v7());
    assert_eq!(store.get_deal(missing).await.expect("read"), None);
    assert!(matches!(join(store, &ids, &deal(&ids, "d0", 2), "c").await, JoinOutcome::NotFound));
}

async fn the_join_that_fills_the_group_completes_it_once<S: OrderStore + DealStore>(store: &S) {
    product(store, "d1", 10).await;
    let ids = OrderIdGenerator::new();
    let d = deal(&ids, "d1", 3);
    store.create_deal(&d).await.expect("create");
    for (i, customer) in ["a", "b"].into_iter().enumerate() {
        match join(store, &ids, &d, customer).await {
            JoinOutcome::Joined { deal, order, emitted, completed } => {
                assert_eq!(deal.members.len(), i + 1);
                assert_eq!(deal.status, DealStatus::Open);
                assert_eq!(order.status, OrderStatus::AwaitingGroup);
                assert_eq!(emitted.len(), 1);
                assert_eq!(emitted[0].routing_key, RoutingKey::DealJoined);
                assert!(completed.is_empty());
            }
            other => panic!("join {customer}: {other:?}"),
        }
    }
    let again = join(store, &ids, &d, "a").await;
    assert!(matches!(again, JoinOutcome::Refused(JoinRefusal::AlreadyJoined)), "{again:?}");
    match join(store, &ids, &d, "c").await {
        JoinOutcome::Joined { deal, order, emitted, completed } => {
            assert_eq!(deal.status, DealStatus::Completed);
            assert_eq!(order.status, OrderStatus::Accepted, "the filling order moves on too");
            let keys: Vec<RoutingKey> = emitted.iter().map(|e| e.routing_key).collect();
            assert_eq!(keys[0], RoutingKey::DealJoined);
            assert_eq!(keys[1..], [RoutingKey::DealCompleted; 3]);
            assert_eq!(completed.len(), 3);
            for member in &completed {
                assert_eq!(member.status, OrderStatus::Accepted);
                let stored = store.get_order(member.id).await.expect("read").expect("exists");
                assert_eq!(stored.status, OrderStatus::Accepted);
                let history: Vec<OrderStatus> =
                    stored.full_history().iter().map(|c| c.status).collect();
                assert_eq!(history, [OrderStatus::AwaitingGroup, OrderStatus::Accepted]);
            }
        }
        other => panic!("filling join: {other:?}"),
    }
    let late = join(store, &ids, &d, "d").await;
    assert!(matches!(late, JoinOutcome::Refused(JoinRefusal::Full)), "{late:?}");
    let product = store.get_product(&sku("d1")).await.expect("read").expect("exists");
    assert_eq!(product.reserved, 3, "each member holds one unit; refused joins hold none");
    let stored = store.get_deal(d.id).await.expect("read").expect("exists");
    assert_eq!(stored.status, DealStatus::Completed);
    assert_eq!(stored.members.len(), 3);
    let due = store.due_deals(UnixMillis(DEADLINE.0 + 1), 100).await.expect("due");
    assert!(!due.contains(&d.id), "a completed deal never expires");
}

async fn an_expiry_cancels_every_member_once<S: OrderStore + DealStore>(store: &S) {
    product(store, "d2", 10).await;
    let ids = OrderIdGenerator::new();
    let d = deal(&ids, "d2", 3);
    store.create_deal(&d).await.expect("create");
    let JoinOutcome::Joined { order, .. } = join(store, &ids, &d, "a").await else {
        panic!("join")
    };
    assert!(store.due_deals(UnixMillis(DEADLINE.0 - 1), 100).await.expect("due").is_empty());
    assert!(store.due_deals(DEADLINE, 100).await.expect("due").contains(&d.id));
    let early = store.expire_deal(d.id, event_ids(3), UnixMillis(DEADLINE.0 - 1)).await;
    assert!(early.expect("decided").is_none(), "not due yet: nothing happens");
    let expired = store.expire_deal(d.id, event_ids(3), DEADLINE).await.expect("expire");
    let expired = expired.expect("due and open: it expires");
    assert_eq!(expired.deal.status, DealStatus::Expired);
    assert_eq!(expired.cancelled.len(), 1);
    assert_eq!(expired.cancelled[0].id, order.id);
    assert_eq!(expired.emitted.len(), 1);
    assert_eq!(expired.emitted[0].routing_key, RoutingKey::DealExpired);
    let stored = store.get_order(order.id).await.expect("read").expect("exists");
    assert_eq!(stored.status, OrderStatus::Cancelled);
    let twice = store.expire_deal(d.id, event_ids(3), DEADLINE).await.expect("decided");
    assert!(twice.is_none(), "an expiry fires once");
    let due = store.due_deals(UnixMillis(DEADLINE.0 + 1), 100).await.expect("due");
    assert!(!due.contains(&d.id), "an expired deal is no longer due");
    let after = store
        .join_deal(d.id, member_order(&ids, &d, "z"), event_ids(3), DEADLINE)
        .await
        .expect("decided");
    assert!(matches!(after, JoinOutcome::Refused(JoinRefusal::Expired)), "{after:?}");
}

async fn concurrent_joins_for_the_last_slots_admit_exactly_the_group<S: OrderStore + DealStore>(
    store: Arc<S>,
) {
    product(&*store, "d3", 100).await;
    let ids = Arc::new(OrderIdGenerator::new());
    let d = deal(&ids, "d3", 3);
    store.create_deal(&d).await.expect("create");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let (store, ids, d) = (store.clone(), ids.clone(), d.clone());
        tasks.spawn(async move {
            matches!(join(&*store, &ids, &d, &format!("c{i}")).await, JoinOutcome::Joined { .. })
        });
    }
    let mut joined = 0;
    while let Some(result) = tasks.join_next().await {
        joined += usize::from(result.expect("task"));
    }
    assert_eq!(joined, 3, "exactly group_size joins win");
    let stored = store.get_deal(d.id).await.expect("read").expect("exists");
    assert_eq!((stored.status, stored.members.len()), (DealStatus::Completed, 3));
}

async fn limits_are_stored_and_units_counted_per_customer<
    S: OrderStore + DealStore + LimitStore,
>(
    store: &S,
) {
    product(store, "l1", 100).await;
    store.set_purchase_limit(&sku("l1"), Some(2)).await.expect("set");
    store.set_purchase_limit(&sku("d1"), Some(1)).await.expect("set");
    store.set_purchase_limit(&sku("d1"), None).await.expect("remove");
    assert_eq!(store.purchase_limits().await.expect("read"), vec![(sku("l1"), 2)]);
    let ids = OrderIdGenerator::new();
    let mut orders = Vec::new();
    for (customer, quantity) in [("a", 1), ("a", 1), ("b", 2)] {
        let mut order = crate::contract::accepted(&ids, &[("l1", quantity)], None);
        order.order.customer_id = CustomerId::parse(customer).expect("valid");
        orders.push(order);
    }
    store.commit_orders(Arc::new(orders)).await.expect("commit");
    let mut units = store.units_by_customer(&sku("l1")).await.expect("read");
    units.sort_by(|x, y| x.0.as_str().cmp(y.0.as_str()));
    let units: Vec<(&str, u64)> = units.iter().map(|(c, n)| (c.as_str(), *n)).collect();
    assert_eq!(units, vec![("a", 2), ("b", 2)]);
    // Deal orders count too, cancelled ones do not (d2's member "a" was cancelled above).
    let d1: Vec<(String, u64)> = store
        .units_by_customer(&sku("d1"))
        .await
        .expect("read")
        .into_iter()
        .map(|(c, n)| (c.as_str().to_owned(), n))
        .collect();
    assert_eq!(d1.len(), 3);
    assert!(store.units_by_customer(&sku("d2")).await.expect("read").is_empty());
}
