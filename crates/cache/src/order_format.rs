//! How the order read cache keeps an order where it outlives this process (Redis): a format of
//! the cache's own, built from the core [`Order`], not any HTTP view. It is versioned by
//! [`VERSION`], which is part of every key, so nodes of two releases sharing one Redis during
//! a rolling deploy never read each other's entries: a changed format gets a new version, and
//! the old entries simply expire.

use ordermill_core::ports::CacheError;
use ordermill_core::{
    AwaitedPayment, CustomerId, HistoryNote, IdempotencyKey, Money, Order, OrderLine, OrderStatus,
    Quantity, Sku, StatusChange, UnixMillis,
};
use serde::{Deserialize, Serialize};

/// The format's version, in every key (`PREFIX:order:v2:ID`). Bump it with any change below.
pub const VERSION: &str = "v2";

#[derive(Debug, Serialize, Deserialize)]
struct CachedOrder {
    customer_id: String,
    status: String,
    total_minor: i64,
    /// `(sku, quantity, unit price in minor units)`: line totals are derived again.
    lines: Vec<(String, i64, i64)>,
    created_at: i64,
    idempotency_key: Option<String>,
    /// `(status, at, note)` per change, oldest first.
    history: Vec<(String, i64, Option<String>)>,
    /// A pay-later order's `(deadline, payment URL)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    awaited_payment: Option<(i64, String)>,
}

/// An order in the cache's format.
pub(crate) fn encode(order: &Order) -> String {
    let cached = CachedOrder {
        customer_id: order.customer_id.as_str().to_owned(),
        status: order.status.as_str().to_owned(),
        total_minor: order.total.minor(),
        lines: order
            .lines
            .iter()
            .map(|l| (l.sku.as_str().to_owned(), i64::from(l.quantity.get()), l.unit_price.minor()))
            .collect(),
        created_at: order.created_at.0,
        idempotency_key: order.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
        history: order
            .history
            .iter()
            .map(|c| (c.status.as_str().to_owned(), c.at.0, c.note.map(|n| n.as_str().to_owned())))
            .collect(),
        awaited_payment: order
            .awaited_payment
            .as_ref()
            .map(|a| (a.pay_by.0, a.payment_url.clone())),
    };
    serde_json::to_string(&cached).expect("serializing strings and integers cannot fail")
}

/// An order back from the cache's format; `id` comes from the key.
///
/// # Errors
/// [`CacheError::Backend`] when the entry does not parse (written by hand, or a format change
/// that forgot to bump [`VERSION`]): the caller reads the store instead.
pub(crate) fn decode(id: ordermill_core::OrderId, text: &str) -> Result<Order, CacheError> {
    let bad = |what: String| CacheError::Backend(format!("cached order {id}: {what}").into());
    let cached: CachedOrder = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
    let status = |s: &str| OrderStatus::parse(s).ok_or_else(|| bad(format!("status {s:?}")));
    let lines = cached
        .lines
        .into_iter()
        .map(|(sku, quantity, price)| {
            let price =
                Money::from_minor(price).ok_or_else(|| bad(format!("unit price {price}")))?;
            OrderLine::priced(
                Sku::parse(sku).map_err(|e| bad(e.to_string()))?,
                Quantity::parse(quantity).map_err(|e| bad(e.to_string()))?,
                price,
            )
            .map_err(|e| bad(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let history = cached
        .history
        .iter()
        .map(|(s, at, note)| {
            let note = note
                .as_deref()
                .map(|n| HistoryNote::parse(n).ok_or_else(|| bad(format!("history note {n:?}"))))
                .transpose()?;
            Ok(StatusChange { note, ..StatusChange::new(status(s)?, UnixMillis(*at)) })
        })
        .collect::<Result<Vec<_>, CacheError>>()?;
    Ok(Order {
        id,
        customer_id: CustomerId::parse(cached.customer_id).map_err(|e| bad(e.to_string()))?,
        status: status(&cached.status)?,
        total: Money::from_minor(cached.total_minor)
            .ok_or_else(|| bad(format!("total {}", cached.total_minor)))?,
        lines,
        created_at: UnixMillis(cached.created_at),
        idempotency_key: cached
            .idempotency_key
            .map(|k| IdempotencyKey::parse(&k))
            .transpose()
            .map_err(|e| bad(e.to_string()))?,
        history,
        awaited_payment: cached.awaited_payment.map(|(pay_by, payment_url)| {
            Box::new(AwaitedPayment { pay_by: UnixMillis(pay_by), payment_url })
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> Order {
        let lines = vec![
            OrderLine::priced(
                Sku::parse("crab-1").unwrap(),
                Quantity::parse(2).unwrap(),
                Money::parse("price", "19.99").unwrap(),
            )
            .unwrap(),
        ];
        Order {
            id: ordermill_core::OrderId::parse("01a201aa-0000-7000-8000-000000000001").unwrap(),
            customer_id: CustomerId::parse("张三").unwrap(),
            total: lines[0].line_total,
            lines,
            status: OrderStatus::Confirmed,
            created_at: UnixMillis(1_790_000_000_000),
            idempotency_key: Some(IdempotencyKey::parse("k-1").unwrap()),
            history: vec![StatusChange::new(OrderStatus::Confirmed, UnixMillis(1_790_000_000_250))],
            awaited_payment: None,
        }
    }

    #[test]
    fn an_order_round_trips_through_the_cache_format() {
        let order = order();
        assert_eq!(decode(order.id, &encode(&order)).unwrap(), order);
    }

    #[test]
    fn a_pay_later_order_keeps_its_deadline_url_and_notes() {
        let mut order = order();
        order.status = OrderStatus::Cancelled;
        order.awaited_payment = Some(Box::new(AwaitedPayment {
            pay_by: UnixMillis(1_790_000_900_000),
            payment_url: "https://pay.example/c/1".into(),
        }));
        order.history = vec![
            StatusChange::new(OrderStatus::AwaitingPayment, UnixMillis(1_790_000_000_100)),
            StatusChange::new(OrderStatus::Cancelled, UnixMillis(1_790_000_900_000)),
            StatusChange {
                note: Some(HistoryNote::RefundRequired),
                ..StatusChange::new(OrderStatus::Cancelled, UnixMillis(1_790_000_900_500))
            },
        ];
        assert_eq!(decode(order.id, &encode(&order)).unwrap(), order);
    }

    /// Pins the v2 format: if this fails, the format changed, so bump [`VERSION`] too (nodes of
    /// the previous release would otherwise read entries they cannot parse).
    #[test]
    fn the_v2_format_is_what_nodes_of_this_version_share() {
        assert_eq!(VERSION, "v2");
        assert_eq!(
            encode(&order()),
            r#"{"customer_id":"张三","status":"confirmed","total_minor":3998,"lines":[["crab-1",2,1999]],"created_at":1790000000000,"idempotency_key":"k-1","history":[["confirmed",1790000000250,null]]}"#
        );
    }

    #[test]
    fn an_entry_that_does_not_parse_is_an_error_not_a_wrong_order() {
        let id = order().id;
        assert!(decode(id, r#"{"status":"accepted"}"#).is_err());
        let bad_status = encode(&order()).replace("\"confirmed\",1790", "\"shipped\",1790");
        assert!(decode(id, &bad_status).is_err());
    }
}
