//! Helpers shared by every crate's tests: finding real services, and orders whose content
//! does not matter. Reading an environment variable is the only outside contact here; nothing
//! connects anywhere.

use crate::{
    CustomerId, Money, Order, OrderIdGenerator, OrderLine, OrderStatus, Quantity, Sku, UnixMillis,
};

/// The URL of a real service for a test, from environment variable `var`. Unset: prints why
/// the test skips and returns `None` — unless `ORDERMILL_TEST_REQUIRE_SERVICES=1` (CI), where
/// a skip would hide a broken backend, so it panics instead.
///
/// # Panics
/// When `var` is unset and services are required.
pub fn service_url(var: &str, example: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("ORDERMILL_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{var} is unset but ORDERMILL_TEST_REQUIRE_SERVICES=1: the service tests must run"
            );
            // Straight to stderr, past the test harness's capture, so a plain `cargo test`
            // shows why the test did nothing.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "skipping: set {var}={example} to run this test");
            None
        }
    }
}

/// A just-accepted order made at `now`: customer `c-1`, one line of `quantity` × `sku-1` at
/// `unit_price` (e.g. `"9.99"`).
///
/// # Panics
/// When `quantity` or `unit_price` is not a valid order line: the calling test's own mistake.
pub fn accepted_order(
    ids: &OrderIdGenerator,
    now: UnixMillis,
    quantity: i64,
    unit_price: &str,
) -> Order {
    let line = OrderLine::priced(
        Sku::parse("sku-1").expect("a valid SKU"),
        Quantity::parse(quantity).expect("the test passes a valid quantity"),
        Money::parse("price", unit_price).expect("the test passes a valid price"),
    )
    .expect("the test's line is within the limits");
    Order {
        id: ids.next(now),
        customer_id: CustomerId::parse("c-1").expect("a valid customer id"),
        total: line.line_total,
        lines: vec![line],
        status: OrderStatus::Accepted,
        created_at: now,
        idempotency_key: None,
        history: Vec::new(),
        awaited_payment: None,
    }
}
