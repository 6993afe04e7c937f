//! Deal joins queued together go into one transaction ([`deals::join_each`]); each must be
//! decided and written exactly as it would be alone.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use ordermill_core::{Deal, DealStatus, JoinRefusal, OrderIdGenerator, OrderStatus, UnixMillis};
use rusqlite::Connection;

use super::deals;
use super::schema;
use crate::deal_contract::{self, deal, member_order};
use crate::join::Join;

/// Within the fixture deals' minute (`deal_contract`'s clock).
const AT: UnixMillis = UnixMillis(1_790_000_001_000);

fn store() -> (tempfile::TempDir, Connection) {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = Connection::open(dir.path().join("joins.db")).unwrap();
    schema::migrate(&mut conn).unwrap();
    conn.execute_batch(
        "INSERT INTO products (sku, name, price_minor, stock, reserved) VALUES
           ('tea', 'Tea', 990, 100, 0), ('gone', 'Gone', 990, 100, 0)",
    )
    .unwrap();
    (dir, conn)
}

fn join(ids: &OrderIdGenerator, deal: &Deal, customer: &str) -> Join {
    let completion_ids = (0..deal.group_size.get()).map(|_| ids.next_uuid(AT)).collect();
    Join { deal_id: deal.id, order: member_order(ids, deal, customer), completion_ids, at: AT }
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |row| row.get(0)).unwrap()
}

#[test]
fn joins_in_one_transaction_are_decided_in_order_and_a_failed_one_writes_nothing() {
    let (_dir, mut conn) = store();
    let ids = OrderIdGenerator::new();
    let pair = deal(&ids, "tea", 2);
    let trio = deal(&ids, "tea", 3);
    let broken = deal(&ids, "gone", 2);
    for d in [&pair, &trio, &broken] {
        deals::create(&mut conn, d).unwrap();
    }
    // The product vanishes under an open deal: its join fails after writing its order row.
    conn.execute_batch("DELETE FROM products WHERE sku = 'gone'").unwrap();
    let unknown = deal(&ids, "tea", 2);

    let joins = [
        join(&ids, &pair, "ann"),
        join(&ids, &pair, "bob"),
        join(&ids, &pair, "cy"),
        join(&ids, &trio, "ann"),
        join(&ids, &broken, "dee"),
        join(&ids, &trio, "ann"),
        join(&ids, &unknown, "eve"),
        join(&ids, &trio, "fay"),
    ];
    let outcomes = deals::join_each(&mut conn, &joins);

    let described: Vec<String> = outcomes.iter().map(deal_contract::described).collect();
    assert_eq!(described[0], "joined open awaiting_group 0");
    assert_eq!(described[1], "joined completed accepted 2", "the second fills the pair");
    assert_eq!(described[2], format!("refused {:?}", JoinRefusal::Full));
    assert_eq!(described[3], "joined open awaiting_group 0");
    assert!(described[4].starts_with("failed"), "{}", described[4]);
    assert_eq!(described[5], format!("refused {:?}", JoinRefusal::AlreadyJoined));
    assert_eq!(described[6], "not found");
    assert_eq!(described[7], "joined open awaiting_group 0");

    assert_eq!(count(&conn, "SELECT count(*) FROM orders"), 4, "the four joins, nothing else");
    assert_eq!(count(&conn, "SELECT count(*) FROM deal_members"), 4);
    assert_eq!(count(&conn, "SELECT reserved FROM products WHERE sku = 'tea'"), 4);
    let accepted = OrderStatus::Accepted.as_str();
    let sql = format!("SELECT count(*) FROM orders WHERE status = '{accepted}'");
    assert_eq!(count(&conn, &sql), 2, "both members of the pair moved on");
    let pair_now = deals::load(&conn, pair.id).unwrap().unwrap();
    assert_eq!(pair_now.status, DealStatus::Completed);
    // deal.joined for each join, deal.completed for each of the pair's members.
    assert_eq!(count(&conn, "SELECT count(*) FROM outbox"), 6);
}
