//! Data dirs written by other releases: one from before ids were stored as 16 bytes (schema
//! 5) reads the same after the upgrade (every id converted, nothing lost, the upgraded file
//! used as a new one would be); one from a newer release is refused and left untouched.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use std::sync::Arc;

use ordermill_core::ports::{AcceptedOrder, BusLedger, DealStore, OrderStore};
use ordermill_core::{CustomerId, DealId, OrderId, OrderIdGenerator, UnixMillis};
use rusqlite::{Connection, params};

use super::{DB_FILE, SqliteStore, schema};
use crate::contract;

struct Fixture {
    accepted: AcceptedOrder,
    deal: DealId,
}

/// Writes, the way schema 5 stored them, one order awaiting payment with its deadline, its
/// `order.created` event (owed a retry by one queue, dead in another), a consumer's
/// processed record, a payment and a deal the order joined.
fn write_schema_5(dir: &std::path::Path, order: &Fixture) {
    let mut conn = Connection::open(dir.join(DB_FILE)).unwrap();
    schema::migrate_to(&mut conn, 5).unwrap();
    let o = &order.accepted.order;
    let (id, event) = (o.id.to_string(), order.accepted.event_id.hyphenated().to_string());
    let deal = order.deal.to_string();
    conn.execute_batch("INSERT INTO products (sku, name, price_minor, stock, reserved) VALUES ('s1', 'S', 250, 10, 2)")
        .unwrap();
    conn.execute(
        "INSERT INTO orders (id, customer_id, status, total_minor, items, created_at,
                             idempotency_key, pay_by)
         VALUES (?1, ?2, 'accepted', ?3, ?4, ?5, 'k1', 9000)",
        params![
            id,
            o.customer_id.as_str(),
            o.total.minor(),
            serde_json::to_string(&o.lines).unwrap(),
            o.created_at.0
        ],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO outbox (event_id, order_id, routing_key, payload, created_at)
         VALUES (?1, ?2, 'order.created', NULL, 1)",
        params![event, id],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO bus_retries (queue, event_id, attempts, not_before, error)
         VALUES ('payment', ?1, 2, 5, 'gateway timed out')",
        [&event],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO bus_dead_letters (queue, event_id, attempts, error, died_at)
         VALUES ('notify', ?1, 5, 'webhook refused', 7)",
        [&event],
    )
    .unwrap();
    conn.execute("INSERT INTO bus_acks (event_id, queue) VALUES (?1, 'inventory')", [&event])
        .unwrap();
    conn.execute(
        "INSERT INTO processed_events (consumer, event_id) VALUES ('inventory', ?1)",
        [&event],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO payments (order_id, status, event_id, at) VALUES (?1, 'charged', ?2, 3)",
        params![id, event],
    )
    .unwrap();
    conn.execute("INSERT INTO payment_deadlines (order_id, pay_by) VALUES (?1, 9000)", [&id])
        .unwrap();
    conn.execute(
        "INSERT INTO deals (id, sku, deal_price_minor, group_size, created_at, expires_at, status)
         VALUES (?1, 's1', 100, 3, 1, 8000, 'open')",
        [&deal],
    )
    .unwrap();
    conn.execute(
        "INSERT INTO deal_members (deal_id, customer_id, order_id, joined_at)
         VALUES (?1, ?2, ?3, 2)",
        params![deal, o.customer_id.as_str(), id],
    )
    .unwrap();
}

#[tokio::test]
async fn a_schema_5_data_dir_reads_the_same_after_ids_become_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let ids = OrderIdGenerator::new();
    let fixture = Fixture {
        accepted: contract::accepted_by(&ids, "c-upgrade", &[("s1", 2)], Some("k1")),
        deal: DealId::from_uuid(ids.next_uuid(UnixMillis(1))),
    };
    write_schema_5(dir.path(), &fixture);

    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let order = &fixture.accepted.order;
    let event = fixture.accepted.event_id;

    let read = store.get_order(order.id).await.unwrap().unwrap();
    assert_eq!((read.id, &read.lines, read.total), (order.id, &order.lines, order.total));
    let customer = CustomerId::parse("c-upgrade").unwrap();
    let key = order.idempotency_key.clone().unwrap();
    let by_key = store.find_by_idempotency_key(&customer, &key).await.unwrap();
    assert_eq!(by_key.map(|o| o.id), Some(order.id));
    let mine = store.orders_of_customer(&customer, None, 10).await.unwrap();
    assert_eq!(mine.iter().map(|o| o.id).collect::<Vec<_>>(), [order.id]);
    assert_eq!(store.due_payments(UnixMillis(9000), 10).await.unwrap(), [order.id]);
    assert_eq!(store.processed("inventory", vec![event]).await.unwrap(), [event]);

    let ledger = store.unfinished().await.unwrap();
    assert_eq!(ledger.len(), 1);
    let entry = &ledger[0];
    assert_eq!(entry.envelope.event_id, event);
    assert!(entry.envelope.payload.contains(&order.id.to_string()), "body rebuilt from the order");
    assert_eq!(entry.acked, ["inventory"]);
    assert_eq!(entry.retries.len(), 1);
    assert_eq!(entry.dead.len(), 1);

    let deal = store.get_deal(fixture.deal).await.unwrap().unwrap();
    assert_eq!(deal.members.iter().map(|m| m.order_id).collect::<Vec<OrderId>>(), [order.id]);
    let created =
        store.deals_created((UnixMillis(0), UnixMillis(1 << 47)), None, 10).await.unwrap();
    assert_eq!(created, [fixture.deal]);

    let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
    for (table, column) in [
        ("orders", "id"),
        ("outbox", "event_id"),
        ("outbox", "order_id"),
        ("bus_acks", "event_id"),
        ("bus_retries", "event_id"),
        ("bus_dead_letters", "event_id"),
        ("processed_events", "event_id"),
        ("payments", "order_id"),
        ("payments", "event_id"),
        ("payment_deadlines", "order_id"),
        ("deals", "id"),
        ("deal_members", "deal_id"),
        ("deal_members", "order_id"),
    ] {
        let shape: (String, i64) = conn
            .query_row(
                &format!("SELECT typeof({column}), length({column}) FROM {table}"),
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(shape, ("blob".to_owned(), 16), "{table}.{column}");
    }
    // The upgraded file takes new orders as a new one would, and its indexes are back.
    let next = contract::accepted_by(&ids, "c-upgrade", &[("s1", 1)], Some("k2"));
    store.commit_orders(Arc::new(vec![next.clone()])).await.unwrap();
    let mine = store.orders_of_customer(&customer, None, 10).await.unwrap();
    assert_eq!(mine.iter().map(|o| o.id).collect::<Vec<_>>(), [next.order.id, order.id]);
    let indexes: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name IN
             ('orders_by_customer', 'orders_idempotency_key', 'deals_open_by_deadline',
              'payment_deadlines_by_time')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(indexes, 4);
    // Schema 7: consumers' records keyed event first (their inserts append together).
    let key: Vec<String> = conn
        .prepare("SELECT name FROM pragma_table_info('processed_events') WHERE pk > 0 ORDER BY pk")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(key, ["event_id", "consumer"]);
    let text_ids: i64 = conn
        .query_row("SELECT count(*) FROM orders WHERE typeof(id) != 'blob'", [], |r| r.get(0))
        .unwrap();
    assert_eq!(text_ids, 0);
}

#[test]
fn a_data_dir_from_a_newer_release_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DB_FILE);
    let conn = Connection::open(&path).unwrap();
    let newer = schema::latest() as i64 + 1;
    conn.pragma_update(None, "user_version", newer).unwrap();
    drop(conn);

    let Err(error) = SqliteStore::open(dir.path()) else { panic!("a newer schema was opened") };
    let message = error.to_string();
    assert!(message.contains("newer ordermill"), "{message}");
    assert!(message.contains(&format!("schema version {newer}")), "{message}");
    let conn = Connection::open(&path).unwrap();
    let tables: i64 =
        conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0)).unwrap();
    assert_eq!(tables, 0, "nothing created in a file this release does not know");
}
