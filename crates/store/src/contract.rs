//! The contract every [`OrderStore`] backend must honour. Each backend's tests call
//! [`run_all`] with a fresh, empty store (its own schema for shared engines).

use std::sync::Arc;

use ordermill_core::ports::{AcceptedOrder, OrderStore, StoreError};
use ordermill_core::{
    CustomerId, IdempotencyKey, Money, Order, OrderIdGenerator, OrderLine, OrderStatus, Product,
    ProductName, Quantity, Sku, StockLevel, UnixMillis,
};

const NOW: UnixMillis = UnixMillis(1_790_000_000_000);

fn sku(s: &str) -> Sku {
    Sku::parse(s).expect("fixture sku is valid")
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
        customer_id: CustomerId::parse("c-contract").expect("fixture customer is valid"),
        total: ordermill_core::order::total_of(&lines).expect("small totals fit"),
        lines,
        status: OrderStatus::Accepted,
        created_at: NOW,
        idempotency_key: key.map(|k| IdempotencyKey::parse(k).expect("fixture key is valid")),
        history: Vec::new(),
    };
    AcceptedOrder { order, event_id: ids.next_uuid(NOW) }
}

/// Runs every contract check; panics (failing the calling test) on the first violation.
pub async fn run_all(store: Arc<dyn OrderStore>) {
    products_round_trip_and_keep_their_reservations(&*store).await;
    committed_orders_round_trip_with_their_events(&*store).await;
    a_failing_batch_writes_nothing(&*store).await;
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
    assert_eq!(store.find_by_idempotency_key(&key).await.expect("read"), Some(first));
    let unknown = IdempotencyKey::parse("key-unknown").expect("valid");
    assert_eq!(store.find_by_idempotency_key(&unknown).await.expect("read"), None);
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

    assert_eq!(store.outbox_len().await.expect("count"), outbox + 1);
    let r1 = store.get_product(&sku("r1")).await.expect("read").expect("exists");
    assert_eq!(r1.reserved, 1, "failed batches hold nothing");
}
