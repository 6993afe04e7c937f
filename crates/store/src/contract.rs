//! The contract every [`OrderStore`] backend must honour. Each backend's tests call
//! [`run_all`] with a fresh, empty store (its own schema for shared engines).

use std::sync::Arc;

use ordermill_core::ports::{AcceptedOrder, Effect, EffectOutcome, OrderStore, StoreError};
use ordermill_core::{
    CustomerId, Fact, IdempotencyKey, Money, Order, OrderId, OrderIdGenerator, OrderLine,
    OrderStatus, Product, ProductName, Quantity, RoutingKey, Sku, StockLevel, UnixMillis,
};
use uuid::Uuid;

const NOW: UnixMillis = UnixMillis(1_790_000_000_000);

fn sku(s: &str) -> Sku {
    Sku::parse(s).expect("fixture sku is valid")
}

/// A product `sku` at 2.50 with `stock` units, for tests of other crates.
pub fn product_for_tests(sku: &str, stock: i64) -> Product {
    product(sku, "2.50", stock)
}

fn product(s: &str, price: &str, stock: i64) -> Product {
    Product {
        sku: sku(s),
        name: ProductName::parse(format!("Product {s}")).expect("fixture name is valid"),
        price: Money::parse("price", price).expect("fixture price is valid"),
        stock: StockLevel::parse(stock).expect("fixture stock is valid"),
        reserved: 0,
    }
}

/// Builds an accepted order of `(sku, quantity)` lines at `price` each.
pub fn accepted(ids: &OrderIdGenerator, lines: &[(&str, i64)], key: Option<&str>) -> AcceptedOrder {
    accepted_by(ids, "c-contract", lines, key)
}

/// [`accepted`] for `customer`.
pub fn accepted_by(
    ids: &OrderIdGenerator,
    customer: &str,
    lines: &[(&str, i64)],
    key: Option<&str>,
) -> AcceptedOrder {
    let lines: Vec<OrderLine> = lines
        .iter()
        .map(|(s, q)| {
            OrderLine::priced(
                sku(s),
                Quantity::parse(*q).expect("fixture quantity is valid"),
                Money::parse("price", "2.50").expect("fixture price is valid"),
            )
            .expect("small totals fit")
        })
        .collect();
    let order = Order {
        id: ids.next(NOW),
        customer_id: CustomerId::parse(customer).expect("fixture customer is valid"),
        total: ordermill_core::order::total_of(&lines).expect("small totals fit"),
        lines,
        status: OrderStatus::Accepted,
        created_at: NOW,
        idempotency_key: key.map(|k| IdempotencyKey::parse(k).expect("fixture key is valid")),
        history: Vec::new(),
        awaited_payment: None,
    };
    AcceptedOrder { order, event_id: ids.next_uuid(NOW) }
}

/// Runs every contract check; panics (failing the calling test) on the first violation.
pub async fn run_all(store: Arc<dyn OrderStore>) {
    products_round_trip_and_keep_their_reservations(&*store).await;
    committed_orders_round_trip_with_their_events(&*store).await;
    a_failing_batch_writes_nothing(&*store).await;
    idempotency_keys_are_per_customer_and_an_expired_one_can_be_freed(&*store).await;
    a_customers_orders_come_newest_first_in_pages(&*store).await;
    a_redelivered_deduction_takes_stock_once(&*store).await;
    a_failed_payment_cancels_and_the_release_gives_units_back(&*store).await;
    a_release_after_a_deduction_restores_the_stock_of_record(&*store).await;
    stock_and_payment_in_one_batch_confirm_the_order(&*store).await;
    an_effect_on_an_unknown_order_is_recorded_and_changes_nothing(&*store).await;
    a_batch_mixing_redeliveries_with_new_events_applies_only_the_new(&*store).await;
    two_payment_outcomes_of_one_order_in_one_batch_keep_the_later(&*store).await;
    a_pay_later_order_keeps_its_deadline_until_paid_or_expired(&*store).await;
    a_callback_racing_its_deadline_has_one_winner(&*store).await;
    operators_find_orders_by_status_in_a_window_newest_first(&*store).await;
    store.check_writable().await.expect("a fresh store is writable");
}

async fn products_round_trip_and_keep_their_reservations(store: &dyn OrderStore) {
    let (stored, previous) =
        store.upsert_product(&product("p1", "19.99", 10)).await.expect("insert");
    assert_eq!(stored, product("p1", "19.99", 10));
    assert_eq!(previous, None);
    assert_eq!(store.get_product(&sku("p1")).await.expect("read"), Some(stored));
    assert_eq!(store.get_product(&sku("p-none")).await.expect("read"), None);

    let ids = OrderIdGenerator::new();
    store.commit_orders(Arc::new(vec![accepted(&ids, &[("p1", 3)], None)])).await.expect("commit");
    let err = store.upsert_product(&product("p1", "5.00", 2)).await.expect_err("below held");
    assert!(matches!(err, StoreError::Conflict(_)), "got {err:?}");
    let (replaced, previous) =
        store.upsert_product(&product("p1", "5.00", 20)).await.expect("replace");
    assert_eq!(previous.map(|p| (p.stock.get(), p.reserved)), Some((10, 3)));
    assert_eq!(replaced.price.to_string(), "5.00");
    assert_eq!(replaced.stock.get(), 20);
    assert_eq!(replaced.reserved, 3, "replacing a product keeps what orders hold");
    let all = store.load_products().await.expect("load");
    assert!(all.iter().any(|p| p.sku.as_str() == "p1" && p.reserved == 3));
}

async fn committed_orders_round_trip_with_their_events(store: &dyn OrderStore) {
    store.upsert_product(&product("q1", "2.50", 100)).await.expect("insert");
    store.upsert_product(&product("q2", "2.50", 100)).await.expect("insert");
    let before = store.outbox_len().await.expect("count");
    let ids = OrderIdGenerator::new();
    let batch: Vec<AcceptedOrder> = (0..50)
        .map(|i| accepted(&ids, &[("q1", 1), ("q2", 2)], Some(&format!("key-{i}"))))
        .collect();
    let first = batch[0].order.clone();
    store.commit_orders(Arc::new(batch)).await.expect("commit");

    assert_eq!(store.get_order(first.id).await.expect("read"), Some(first.clone()));
    let key = IdempotencyKey::parse("key-0").expect("valid");
    let me = first.customer_id.clone();
    assert_eq!(store.find_by_idempotency_key(&me, &key).await.expect("read"), Some(first));
    let unknown = IdempotencyKey::parse("key-unknown").expect("valid");
    assert_eq!(store.find_by_idempotency_key(&me, &unknown).await.expect("read"), None);
    let other = CustomerId::parse("c-other").expect("valid");
    assert_eq!(store.find_by_idempotency_key(&other, &key).await.expect("read"), None);
    let wanted = |name: &str| IdempotencyKey::parse(name).expect("valid");
    let asked = [
        (me.clone(), wanted("key-7")),
        (me.clone(), unknown.clone()),
        (other.clone(), key.clone()),
        (me.clone(), wanted("key-3")),
    ];
    let mut found: Vec<String> = store
        .find_by_idempotency_keys(&asked)
        .await
        .expect("read")
        .into_iter()
        .inspect(|order| assert_eq!(order.customer_id, me, "only the asking customer's"))
        .filter_map(|order| order.idempotency_key.map(|k| k.as_str().to_owned()))
        .collect();
    found.sort();
    assert_eq!(found, ["key-3", "key-7"], "the stored pairs, none for another customer's");
    assert!(store.find_by_idempotency_keys(&[]).await.expect("read").is_empty());
    assert_eq!(store.outbox_len().await.expect("count"), before + 50, "one event per order");
    let q1 = store.get_product(&sku("q1")).await.expect("read").expect("exists");
    let q2 = store.get_product(&sku("q2")).await.expect("read").expect("exists");
    assert_eq!((q1.reserved, q2.reserved), (50, 100), "reserved sums the batch per sku");
}

async fn a_failing_batch_writes_nothing(store: &dyn OrderStore) {
    store.upsert_product(&product("r1", "2.50", 100)).await.expect("insert");
    let ids = OrderIdGenerator::new();
    let outbox = store.outbox_len().await.expect("count");

    // The second order reuses an idempotency key already stored: the whole batch must fail.
    store
        .commit_orders(Arc::new(vec![accepted(&ids, &[("r1", 1)], Some("r-key"))]))
        .await
        .expect("commit");
    let good = accepted(&ids, &[("r1", 1)], None);
    let dup = accepted(&ids, &[("r1", 1)], Some("r-key"));
    let err =
        store.commit_orders(Arc::new(vec![good.clone(), dup])).await.expect_err("duplicate key");
    assert!(matches!(err, StoreError::Conflict(_)), "got {err:?}");
    assert_eq!(store.get_order(good.order.id).await.expect("read"), None);

    // An order for a SKU the catalog does not have fails the batch too.
    let ghost = accepted(&ids, &[("no-such-sku", 1)], None);
    let good2 = accepted(&ids, &[("r1", 1)], None);
    store.commit_orders(Arc::new(vec![good2.clone(), ghost])).await.expect_err("unknown sku");
    assert_eq!(store.get_order(good2.order.id).await.expect("read"), None);

    // Holding beyond stock (a cache that counted wrong) fails the batch: never oversold.
    store.upsert_product(&product("r2", "2.50", 3)).await.expect("insert");
    let within = accepted(&ids, &[("r2", 2)], None);
    let beyond = accepted(&ids, &[("r2", 2)], None);
    let err = store
        .commit_orders(Arc::new(vec![within.clone(), beyond]))
        .await
        .expect_err("4 held of 3 in stock");
    assert!(matches!(&err, StoreError::Oversold(skus) if skus.contains("r2")), "got {err:?}");
    assert_eq!(store.get_order(within.order.id).await.expect("read"), None);
    let r2 = store.get_product(&sku("r2")).await.expect("read").expect("exists");
    assert_eq!(r2.reserved, 0, "the refused batch holds nothing");
    store.commit_orders(Arc::new(vec![within])).await.expect("within stock commits");

    assert_eq!(store.outbox_len().await.expect("count"), outbox + 2);
    let r1 = store.get_product(&sku("r1")).await.expect("read").expect("exists");
    assert_eq!(r1.reserved, 1, "failed batches hold nothing");
}

async fn idempotency_keys_are_per_customer_and_an_expired_one_can_be_freed(store: &dyn OrderStore) {
    store.upsert_product(&product("k1", "2.50", 100)).await.expect("insert");
    let ids = OrderIdGenerator::new();
    let alice = accepted_by(&ids, "c-alice", &[("k1", 1)], Some("shared-key"));
    let bob = accepted_by(&ids, "c-bob", &[("k1", 1)], Some("shared-key"));
    store
        .commit_orders(Arc::new(vec![alice.clone(), bob.clone()]))
        .await
        .expect("one key from two customers is two requests");
    let key = IdempotencyKey::parse("shared-key").expect("valid");
    let found = |who: &str| {
        let who = CustomerId::parse(who).expect("valid");
        let key = key.clone();
        async move { store.find_by_idempotency_key(&who, &key).await.expect("read") }
    };
    assert_eq!(found("c-alice").await.map(|o| o.id), Some(alice.order.id));
    assert_eq!(found("c-bob").await.map(|o| o.id), Some(bob.order.id));

    store.forget_idempotency_key(alice.order.id).await.expect("forget");
    assert_eq!(found("c-alice").await, None, "a freed key names nothing");
    let again = accepted_by(&ids, "c-alice", &[("k1", 1)], Some("shared-key"));
    store.commit_orders(Arc::new(vec![again.clone()])).await.expect("a freed key can be reused");
    assert_eq!(found("c-alice").await.map(|o| o.id), Some(again.order.id));
    let kept = store.get_order(alice.order.id).await.expect("read").expect("kept");
    assert_eq!((kept.idempotency_key, kept.lines), (None, alice.order.lines));
}

async fn a_customers_orders_come_newest_first_in_pages(store: &dyn OrderStore) {
    store.upsert_product(&product("h1", "2.50", 100)).await.expect("insert");
    let ids = OrderIdGenerator::new();
    let mine: Vec<AcceptedOrder> =
        (0..5).map(|_| accepted_by(&ids, "c-pager", &[("h1", 1)], None)).collect();
    let theirs = accepted_by(&ids, "c-someone-else", &[("h1", 1)], None);
    let mut batch = mine.clone();
    batch.insert(2, theirs);
    store.commit_orders(Arc::new(batch)).await.expect("commit");
    let me = CustomerId::parse("c-pager").expect("valid");
    let newest_first: Vec<OrderId> = mine.iter().rev().map(|a| a.order.id).collect();
    let page = store.orders_of_customer(&me, None, 3).await.expect("page 1");
    assert_eq!(page.iter().map(|o| o.id).collect::<Vec<_>>(), newest_first[..3]);
    let rest = store.orders_of_customer(&me, Some(page[2].id), 3).await.expect("page 2");
    assert_eq!(rest.iter().map(|o| o.id).collect::<Vec<_>>(), newest_first[3..]);
    let nobody = CustomerId::parse("c-nobody").expect("valid");
    assert!(store.orders_of_customer(&nobody, None, 10).await.expect("empty").is_empty());
}

/// An effect of `consumer` handling event `event_id` about `order_id`.
pub fn effect(
    ids: &OrderIdGenerator,
    consumer: &str,
    event_id: Uuid,
    order_id: OrderId,
    fact: Option<Fact>,
) -> Effect {
    Effect {
        consumer: Arc::from(consumer),
        event_id,
        order_id,
        fact,
        reason: (fact == Some(Fact::PaymentFailed)).then(|| "card declined".to_owned()),
        new_event_ids: [ids.next_uuid(NOW), ids.next_uuid(NOW)],
        at: UnixMillis(NOW.0 + 1_000),
        unrouted: ordermill_core::RoutingKeys::NONE,
        awaited_payment: None,
        may_repeat: false,
    }
}

fn stock_and_reserved(product: Option<Product>) -> (i64, i64) {
    let product = product.expect("the fixture product exists");
    (product.stock.get(), product.reserved)
}

async fn a_redelivered_deduction_takes_stock_once(store: &dyn OrderStore) {
    store.upsert_product(&product("e1", "2.50", 10)).await.expect("insert");
    let ids = OrderIdGenerator::new();
    let accepted = accepted(&ids, &[("e1", 3)], None);
    store.commit_orders(Arc::new(vec![accepted.clone()])).await.expect("commit");
    let deduct =
        effect(&ids, "inventory", accepted.event_id, accepted.order.id, Some(Fact::StockDeducted));

    // The same delivery twice in one batch, then once more in a later batch.
    let outcomes = store.apply_effects(vec![deduct.clone(), deduct.clone()]).await.expect("apply");
    assert!(
        matches!(
            outcomes.as_slice(),
            [EffectOutcome::Applied { status_changed: false, .. }, EffectOutcome::AlreadyProcessed]
        ),
        "got {outcomes:?}"
    );
    if let EffectOutcome::Applied { order, emitted, released, .. } = &outcomes[0] {
        assert_eq!(order.status, OrderStatus::Accepted, "payment is still pending");
        assert!(
            emitted.is_empty() && released.is_empty(),
            "a deduction emits and releases nothing"
        );
    }
    let again = store.apply_effects(vec![deduct]).await.expect("apply");
    assert!(matches!(again.as_slice(), [EffectOutcome::AlreadyProcessed]), "got {again:?}");
    assert_eq!(
        stock_and_reserved(store.get_product(&sku("e1")).await.expect("read")),
        (7, 0),
        "stock deducted once, the hold turned into the deduction"
    );

    // The same fact under a new event id is a new delivery, but the order has no held units
    // left: it is applied and changes nothing.
    let other =
        effect(&ids, "inventory", ids.next_uuid(NOW), accepted.order.id, Some(Fact::StockDeducted));
    let outcomes = store.apply_effects(vec![other]).await.expect("apply");
    assert!(matches!(outcomes.as_slice(), [EffectOutcome::Applied { .. }]), "got {outcomes:?}");
    assert_eq!(stock_and_reserved(store.get_product(&sku("e1")).await.expect("read")), (7, 0));
}

async fn a_failed_payment_cancels_and_the_release_gives_units_back(store: &dyn OrderStore) {
    store.upsert_product(&product("f1", "2.50", 10)).await.expect("insert");
    store.upsert_product(&product("f2", "2.50", 10)).await.expect("insert");
    let ids = OrderIdGenerator::new();
    let accepted = accepted(&ids, &[("f1", 2), ("f2", 1)], None);
    store.commit_orders(Arc::new(vec![accepted.clone()])).await.expect("commit");
    let outbox = store.outbox_len().await.expect("count");

    let declined =
        effect(&ids, "payment", accepted.event_id, accepted.order.id, Some(Fact::PaymentFailed));
    let outcomes = store.apply_effects(vec![declined.clone()]).await.expect("apply");
    let [EffectOutcome::Applied { order, emitted, released, status_changed }] = outcomes.as_slice()
    else {
        panic!("expected one Applied outcome, got {outcomes:?}");
    };
    assert_eq!(order.status, OrderStatus::Cancelled);
    assert!(*status_changed);
    assert!(released.is_empty(), "the payment consumer gives nothing back; inventory does");
    let keys: Vec<RoutingKey> = emitted.iter().map(|e| e.routing_key).collect();
    assert_eq!(keys, vec![RoutingKey::PaymentFailed, RoutingKey::OrderCancelled]);
    assert_eq!(
        emitted.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        declined.new_event_ids.to_vec()
    );
    for event in emitted {
        let header = ordermill_core::OutboxEvent::header(&event.payload).expect("a JSON body");
        assert_eq!(header.order_id, accepted.order.id.to_string());
        assert!(event.payload.contains("card declined"), "{}", event.payload);
    }
    assert_eq!(store.outbox_len().await.expect("count"), outbox + 2, "both events are stored");
    let stored = store.get_order(accepted.order.id).await.expect("read").expect("exists");
    assert_eq!(stored.status, OrderStatus::Cancelled);
    assert_eq!(stored.history.len(), 1);
    assert_eq!(stored.history[0].status, OrderStatus::Cancelled);
    assert_eq!(stored.history[0].at, declined.at);
    assert_eq!(&stored, order, "the outcome is the order as stored");

    // Inventory, on payment.failed, gives the held units back: reserved drops, stock stays.
    let release = effect(
        &ids,
        "inventory",
        emitted[0].event_id,
        accepted.order.id,
        Some(Fact::StockReleased),
    );
    let outcomes = store.apply_effects(vec![release.clone()]).await.expect("apply");
    let [EffectOutcome::Applied { released, status_changed: false, .. }] = outcomes.as_slice()
    else {
        panic!("expected one Applied outcome, got {outcomes:?}");
    };
    assert_eq!(released, &accepted.order.lines);
    assert_eq!(stock_and_reserved(store.get_product(&sku("f1")).await.expect("read")), (10, 0));
    assert_eq!(stock_and_reserved(store.get_product(&sku("f2")).await.expect("read")), (10, 0));
    let again = store.apply_effects(vec![release]).await.expect("apply");
    assert!(matches!(again.as_slice(), [EffectOutcome::AlreadyProcessed]), "got {again:?}");
    assert_eq!(stock_and_reserved(store.get_product(&sku("f1")).await.expect("read")), (10, 0));
}

async fn a_release_after_a_deduction_restores_the_stock_of_record(store: &dyn OrderStore) {
    store.upsert_product(&product("g1", "2.50", 10)).await.expect("insert");
    let ids = OrderIdGenerator::new();
    let accepted = accepted(&ids, &[("g1", 4)], None);
    store.commit_orders(Arc::new(vec![accepted.clone()])).await.expect("commit");
    let order_id = accepted.order.id;
    let deduct = effect(&ids, "inventory", accepted.event_id, order_id, Some(Fact::StockDeducted));
    let declined = effect(&ids, "payment", accepted.event_id, order_id, Some(Fact::PaymentFailed));
    store.apply_effects(vec![deduct, declined.clone()]).await.expect("apply");
    assert_eq!(stock_and_reserved(store.get_product(&sku("g1")).await.expect("read")), (6, 0));

    let release =
        effect(&ids, "inventory", declined.new_event_ids[0], order_id, Some(Fact::StockReleased));
    let outcomes = store.apply_effects(vec![release]).await.expect("apply");
    let [EffectOutcome::Applied { released, .. }] = outcomes.as_slice() else {
        panic!("expected one Applied outcome, got {outcomes:?}");
    };
    assert_eq!(released, &accepted.order.lines, "the units go back on sale");
    assert_eq!(
        stock_and_reserved(store.get_product(&sku("g1")).await.expect("read")),
        (10, 0),
        "the deducted units come back to the stock of record"
    );
}

async fn stock_and_payment_in_one_batch_confirm_the_order(store: &dyn OrderStore) {
    store.upsert_product(&product("g1", "2.50", 10)).await.expect("insert");
    let ids = OrderIdGenerator::new();
    let accepted = accepted(&ids, &[("g1", 4)], None);
    store.commit_orders(Arc::new(vec![accepted.clone()])).await.expect("commit");
    let id = accepted.order.id;
    let batch = vec![
        effect(&ids, "inventory", accepted.event_id, id, Some(Fact::StockDeducted)),
        effect(&ids, "payment", accepted.event_id, id, Some(Fact::PaymentSucceeded)),
        effect(&ids, "notify", accepted.event_id, id, None),
    ];
    let outcomes = store.apply_effects(batch).await.expect("apply");
    let [
        EffectOutcome::Applied { status_changed: false, .. },
        EffectOutcome::Applied { order, emitted, status_changed: true, .. },
        EffectOutcome::Recorded,
    ] = outcomes.as_slice()
    else {
        panic!(
            "expected two Applied outcomes, the second changing status, and notify's recorded \
             only, got {outcomes:?}"
        );
    };
    assert_eq!(order.status, OrderStatus::Confirmed, "the second effect sees the first");
    let keys: Vec<RoutingKey> = emitted.iter().map(|e| e.routing_key).collect();
    assert_eq!(keys, vec![RoutingKey::PaymentSucceeded, RoutingKey::OrderConfirmed]);
    // Recording processing only neither reads the order nor emits, even for an order that
    // does not exist.
    let ghost = effect(&ids, "notify", ids.next_uuid(NOW), ids.next(NOW), None);
    let recorded = store.apply_effects(vec![ghost.clone()]).await.expect("apply");
    assert!(matches!(recorded.as_slice(), [EffectOutcome::Recorded]), "got {recorded:?}");
    assert_eq!(store.processed("notify", vec![ghost.event_id]).await.expect("read").len(), 1);
    let again = store.apply_effects(vec![ghost.clone()]).await.expect("apply");
    assert!(matches!(again.as_slice(), [EffectOutcome::AlreadyProcessed]), "got {again:?}");
    let stored = store.get_order(id).await.expect("read").expect("exists");
    assert_eq!(&stored, order, "the row holds both effects' changes, history and all");
    assert_eq!(stock_and_reserved(store.get_product(&sku("g1")).await.expect("read")), (6, 0));

    let unknown = ids.next_uuid(NOW);
    let done = store.processed("payment", vec![unknown, accepted.event_id]).await.expect("read");
    assert_eq!(done, vec![accepted.event_id], "only recorded pairs, for that consumer");
    assert!(store.processed("billing", vec![accepted.event_id]).await.expect("read").is_empty());
    assert!(store.processed("notify", Vec::new()).await.expect("read").is_empty());
}

async fn an_effect_on_an_unknown_order_is_recorded_and_changes_nothing(store: &dyn OrderStore) {
    let ids = OrderIdGenerator::new();
    let outbox = store.outbox_len().await.expect("count");
    let ghost =
        effect(&ids, "inventory", ids.next_uuid(NOW), ids.next(NOW), Some(Fact::StockDeducted));
    let outcomes = store.apply_effects(vec![ghost.clone()]).await.expect("apply");
    assert!(matches!(outcomes.as_slice(), [EffectOutcome::OrderNotFound]), "got {outcomes:?}");
    assert_eq!(
        store.processed("inventory", vec![ghost.event_id]).await.expect("read"),
        vec![ghost.event_id],
        "recorded as processed, so a redelivery is recognised"
    );
    let again = store.apply_effects(vec![ghost]).await.expect("apply");
    assert!(matches!(again.as_slice(), [EffectOutcome::AlreadyProcessed]), "got {again:?}");
    assert_eq!(store.outbox_len().await.expect("count"), outbox);
    assert_eq!(store.apply_effects(vec![]).await.expect("apply").len(), 0);
}

/// A redelivered event in a batch of new ones: the new ones apply, the repeat is
/// `AlreadyProcessed` and changes nothing (PostgreSQL first records a batch's events with a
/// plain INSERT, which the repeat fails; the batch is then done again checking each record).
async fn a_batch_mixing_redeliveries_with_new_events_applies_only_the_new(store: &dyn OrderStore) {
    store.upsert_product(&product("m1", "1.00", 10)).await.expect("insert");
    let ids = OrderIdGenerator::new();
    let (old, new) = (accepted(&ids, &[("m1", 1)], None), accepted(&ids, &[("m1", 2)], None));
    store.commit_orders(Arc::new(vec![old.clone(), new.clone()])).await.expect("commit");
    let deduct = |o: &AcceptedOrder| {
        effect(&ids, "inventory", o.event_id, o.order.id, Some(Fact::StockDeducted))
    };
    let first = store.apply_effects(vec![deduct(&old)]).await.expect("apply");
    assert!(matches!(first.as_slice(), [EffectOutcome::Applied { .. }]), "got {first:?}");

    let outcomes = store.apply_effects(vec![deduct(&old), deduct(&new)]).await.expect("apply");
    assert!(
        matches!(
            outcomes.as_slice(),
            [EffectOutcome::AlreadyProcessed, EffectOutcome::Applied { .. }]
        ),
        "got {outcomes:?}"
    );
    assert_eq!(
        stock_and_reserved(store.get_product(&sku("m1")).await.expect("read")),
        (7, 0),
        "each order's units deducted once"
    );

    let notify = |o: &AcceptedOrder| effect(&ids, "notify", o.event_id, o.order.id, None);
    let first = store.apply_effects(vec![notify(&new)]).await.expect("apply");
    assert!(matches!(first.as_slice(), [EffectOutcome::Recorded]), "got {first:?}");
    let outcomes = store.apply_effects(vec![notify(&old), notify(&new)]).await.expect("apply");
    assert!(
        matches!(outcomes.as_slice(), [EffectOutcome::Recorded, EffectOutcome::AlreadyProcessed]),
        "got {outcomes:?}"
    );
    let mut done = store.processed("notify", vec![old.event_id, new.event_id]).await.expect("read");
    done.sort_unstable();
    let mut both = vec![old.event_id, new.event_id];
    both.sort_unstable();
    assert_eq!(done, both, "both recorded, each once");

    // The same, the repeats marked as possible ones (redeliveries): checked at once.
    let third = accepted(&ids, &[("m1", 3)], None);
    store.commit_orders(Arc::new(vec![third.clone()])).await.expect("commit");
    let repeat = Effect { may_repeat: true, ..deduct(&new) };
    let outcomes = store.apply_effects(vec![repeat, deduct(&third)]).await.expect("apply");
    assert!(
        matches!(
            outcomes.as_slice(),
            [EffectOutcome::AlreadyProcessed, EffectOutcome::Applied { .. }]
        ),
        "got {outcomes:?}"
    );
    assert_eq!(stock_and_reserved(store.get_product(&sku("m1")).await.expect("read")), (4, 0));
    let repeat = Effect { may_repeat: true, ..notify(&old) };
    let outcomes = store.apply_effects(vec![repeat, notify(&third)]).await.expect("apply");
    assert!(
        matches!(outcomes.as_slice(), [EffectOutcome::AlreadyProcessed, EffectOutcome::Recorded]),
        "got {outcomes:?}"
    );
}

/// A decline and then money for the same order in one batch (two payment sources, one
/// consumer's batch): the order is cancelled once and owes the money back, as when the two
/// come in separate batches.
async fn two_payment_outcomes_of_one_order_in_one_batch_keep_the_later(store: &dyn OrderStore) {
    store.upsert_product(&product("w1", "1.00", 10)).await.expect("insert");
    let ids = OrderIdGenerator::new();
    let order = accepted(&ids, &[("w1", 1)], None);
    store.commit_orders(Arc::new(vec![order.clone()])).await.expect("commit");
    let id = order.order.id;
    let declined = effect(&ids, "payment", order.event_id, id, Some(Fact::PaymentFailed));
    let paid =
        effect(&ids, "payment_callback", ids.next_uuid(NOW), id, Some(Fact::PaymentSucceeded));
    let outcomes = store.apply_effects(vec![declined, paid]).await.expect("apply");
    let [
        EffectOutcome::Applied { status_changed: true, .. },
        EffectOutcome::Applied { emitted, status_changed: false, .. },
    ] = outcomes.as_slice()
    else {
        panic!("expected the decline then the late money applied, got {outcomes:?}");
    };
    assert_eq!(
        emitted.iter().map(|e| e.routing_key).collect::<Vec<_>>(),
        vec![RoutingKey::PaymentRefundRequired]
    );
    let stored = store.get_order(id).await.expect("read").expect("exists");
    assert_eq!(stored.status, OrderStatus::Cancelled);
    let notes: Vec<_> = stored.history.iter().filter_map(|c| c.note).collect();
    assert_eq!(notes, vec![ordermill_core::HistoryNote::RefundRequired]);
}

/// A payment request for `order_id` (the payment consumer's, in `await_callback` mode).
fn payment_request(ids: &OrderIdGenerator, order: &AcceptedOrder, pay_by: i64) -> Effect {
    Effect {
        awaited_payment: Some(ordermill_core::AwaitedPayment {
            pay_by: UnixMillis(pay_by),
            payment_url: format!("https://pay.example/checkout/{}", order.order.id),
        }),
        ..effect(ids, "payment", order.event_id, order.order.id, Some(Fact::PaymentRequested))
    }
}

async fn a_pay_later_order_keeps_its_deadline_until_paid_or_expired(store: &dyn OrderStore) {
    store.upsert_product(&product("p1", "2.50", 10)).await.expect("insert");
    let ids = OrderIdGenerator::new();
    let (paid, unpaid) = (accepted(&ids, &[("p1", 1)], None), accepted(&ids, &[("p1", 2)], None));
    store.commit_orders(Arc::new(vec![paid.clone(), unpaid.clone()])).await.expect("commit");
    let deadline = NOW.0 + 60_000;
    let requests =
        vec![payment_request(&ids, &paid, deadline), payment_request(&ids, &unpaid, deadline + 1)];
    store.apply_effects(requests.clone()).await.expect("apply");
    let stored = store.get_order(unpaid.order.id).await.expect("read").expect("exists");
    assert_eq!(stored.status, OrderStatus::AwaitingPayment);
    assert_eq!(
        stored.awaited_payment.as_deref(),
        requests[1].awaited_payment.as_ref(),
        "URL and deadline are kept"
    );
    let again = store.apply_effects(vec![requests[1].clone()]).await.expect("apply");
    assert!(matches!(again.as_slice(), [EffectOutcome::AlreadyProcessed]), "got {again:?}");

    assert!(store.due_payments(UnixMillis(deadline - 1), 10).await.expect("due").is_empty());
    let due = store.due_payments(UnixMillis(deadline + 1), 10).await.expect("due");
    assert_eq!(due, vec![paid.order.id, unpaid.order.id], "earliest deadline first");
    assert_eq!(store.due_payments(UnixMillis(deadline + 1), 1).await.expect("due").len(), 1);

    // Paid in time: no longer watched. Not paid: cancelled at the deadline, then money late.
    let pay = |order: &AcceptedOrder| {
        effect(
            &ids,
            "payment_callback",
            ids.next_uuid(NOW),
            order.order.id,
            Some(Fact::PaymentSucceeded),
        )
    };
    store.apply_effects(vec![pay(&paid)]).await.expect("apply");
    let expire = effect(
        &ids,
        "payment_timeout",
        ids.next_uuid(NOW),
        unpaid.order.id,
        Some(Fact::PaymentExpired),
    );
    let outcomes = store.apply_effects(vec![expire]).await.expect("apply");
    let [EffectOutcome::Applied { emitted, status_changed: true, .. }] = outcomes.as_slice() else {
        panic!("expected the expiry to apply, got {outcomes:?}");
    };
    let keys: Vec<RoutingKey> = emitted.iter().map(|e| e.routing_key).collect();
    assert_eq!(keys, vec![RoutingKey::PaymentFailed, RoutingKey::OrderCancelled]);
    assert!(store.due_payments(UnixMillis(deadline + 1), 10).await.expect("due").is_empty());
    assert_eq!(
        store.get_order(paid.order.id).await.expect("read").expect("exists").status,
        OrderStatus::Accepted,
        "paid; confirmed once inventory deducts"
    );

    let outcomes = store.apply_effects(vec![pay(&unpaid)]).await.expect("apply");
    let [EffectOutcome::Applied { emitted, status_changed: false, .. }] = outcomes.as_slice()
    else {
        panic!("expected the late payment to be recorded, got {outcomes:?}");
    };
    assert_eq!(
        emitted.iter().map(|e| e.routing_key).collect::<Vec<_>>(),
        vec![RoutingKey::PaymentRefundRequired]
    );
    let stored = store.get_order(unpaid.order.id).await.expect("read").expect("exists");
    assert_eq!(stored.status, OrderStatus::Cancelled, "late money does not resurrect it");
    let notes: Vec<_> = stored.history.iter().filter_map(|c| c.note).collect();
    assert_eq!(notes, vec![ordermill_core::HistoryNote::RefundRequired]);
}

async fn a_callback_racing_its_deadline_has_one_winner(store: &dyn OrderStore) {
    store.upsert_product(&product("r1", "1.00", 100)).await.expect("insert");
    let ids = OrderIdGenerator::new();
    for round in 0..8 {
        let order = accepted(&ids, &[("r1", 1)], None);
        store.commit_orders(Arc::new(vec![order.clone()])).await.expect("commit");
        store.apply_effects(vec![payment_request(&ids, &order, NOW.0)]).await.expect("apply");
        let id = order.order.id;
        let pay =
            effect(&ids, "payment_callback", ids.next_uuid(NOW), id, Some(Fact::PaymentSucceeded));
        let expire =
            effect(&ids, "payment_timeout", ids.next_uuid(NOW), id, Some(Fact::PaymentExpired));
        // Both at once (on PostgreSQL, two connections contending for the order's row lock),
        // in alternating submission order.
        let (paid, expired) = if round % 2 == 0 {
            tokio::join!(store.apply_effects(vec![pay]), store.apply_effects(vec![expire]))
        } else {
            let (e, p) =
                tokio::join!(store.apply_effects(vec![expire]), store.apply_effects(vec![pay]));
            (p, e)
        };
        let keys = |outcomes: Vec<EffectOutcome>| -> Vec<RoutingKey> {
            match outcomes.as_slice() {
                [EffectOutcome::Applied { emitted, .. }] => {
                    emitted.iter().map(|e| e.routing_key).collect()
                }
                other => panic!("expected one Applied outcome, got {other:?}"),
            }
        };
        let (paid, expired) = (keys(paid.expect("apply")), keys(expired.expect("apply")));
        let stored = store.get_order(id).await.expect("read").expect("exists");
        if expired.is_empty() {
            // The payment won: the deadline found nothing to cancel.
            assert_eq!(paid, vec![RoutingKey::PaymentSucceeded], "round {round}");
            assert_eq!(stored.status, OrderStatus::Accepted, "round {round}");
        } else {
            // The deadline won: the payment is money owed back, the order stays cancelled.
            assert_eq!(expired, vec![RoutingKey::PaymentFailed, RoutingKey::OrderCancelled]);
            assert_eq!(paid, vec![RoutingKey::PaymentRefundRequired], "round {round}");
            assert_eq!(stored.status, OrderStatus::Cancelled, "round {round}");
        }
        assert!(store.due_payments(UnixMillis(NOW.0 + 1), 100).await.expect("due").is_empty());
    }
}

async fn operators_find_orders_by_status_in_a_window_newest_first(store: &dyn OrderStore) {
    use ordermill_core::ports::{OrderFilter, OrderQuery};
    store.upsert_product(&product("q1", "1.00", 100)).await.expect("insert");
    let ids = OrderIdGenerator::new();
    // Ten days after every other check's orders, so only these fall in the window.
    let later = UnixMillis(NOW.0 + 10 * 86_400_000);
    let at_later = |_| {
        let mut a = accepted(&ids, &[("q1", 1)], None);
        a.order.id = ids.next(later);
        a.order.created_at = later;
        a
    };
    let orders: Vec<AcceptedOrder> = (0..5).map(at_later).collect();
    store.commit_orders(Arc::new(orders.clone())).await.expect("commit");
    let cancel = |a: &AcceptedOrder| {
        effect(&ids, "admin", ids.next_uuid(later), a.order.id, Some(Fact::OperatorCancelled))
    };
    store.apply_effects(vec![cancel(&orders[0]), cancel(&orders[1])]).await.expect("apply");
    let late_money = effect(
        &ids,
        "payment_callback",
        ids.next_uuid(later),
        orders[1].order.id,
        Some(Fact::PaymentSucceeded),
    );
    store.apply_effects(vec![late_money]).await.expect("apply");

    let query = |filter, before, limit| OrderQuery {
        filter,
        since: later,
        until: UnixMillis(later.0 + 1),
        before,
        limit,
    };
    let found =
        |orders: Vec<ordermill_core::Order>| orders.iter().map(|o| o.id).collect::<Vec<_>>();
    let accepted_now = OrderFilter::Status(OrderStatus::Accepted);
    let page = store.find_orders(query(accepted_now, None, 2)).await.expect("find");
    assert_eq!(found(page.clone()), vec![orders[4].order.id, orders[3].order.id], "newest first");
    let rest = store.find_orders(query(accepted_now, Some(page[1].id), 2)).await.expect("find");
    assert_eq!(found(rest), vec![orders[2].order.id]);
    let cancelled = store
        .find_orders(query(OrderFilter::Status(OrderStatus::Cancelled), None, 10))
        .await
        .expect("find");
    assert_eq!(found(cancelled), vec![orders[1].order.id, orders[0].order.id]);
    let owed = store.find_orders(query(OrderFilter::RefundRequired, None, 10)).await.expect("find");
    assert_eq!(found(owed), vec![orders[1].order.id]);
    let every = store.find_orders(query(OrderFilter::Any, None, 4)).await.expect("find");
    assert_eq!(
        found(every),
        vec![orders[4].order.id, orders[3].order.id, orders[2].order.id, orders[1].order.id],
        "every status, newest first"
    );
    let before_window =
        OrderQuery { until: UnixMillis(later.0 - 1), ..query(accepted_now, None, 10) };
    assert!(store.find_orders(before_window).await.expect("find").is_empty());
}
