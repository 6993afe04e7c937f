//! Every parser of client text, fed any text: no panic, what is accepted keeps its documented
//! shape and reads back unchanged, and a refusal echoes a bounded part of the input (a log
//! line or an error body cannot be flooded through it). HTTP fuzzing (scripts/fuzz/api.sh)
//! sends what the OpenAPI document describes; this covers the parsers with everything else.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use ordermill_core::{
    CustomerId, DealId, GroupSize, HumanDuration, IdempotencyKey, Money, OrderId, ProductName,
    Quantity, Sku, StockLevel, ValidationError,
};
use proptest::prelude::*;

/// Any text: printable ASCII, CJK, controls, emoji, long runs.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,300}", "[ -~]{0,100}", "\\PC{0,100}", "[0-9a-zA-Z._:-]{0,80}"]
}

/// A refusal quotes at most 80 characters of the input, Debug-escaped: one character may print
/// as ten (`\u{10ffff}`), so the message stays under 80 × 10 plus its own text.
fn bounded(error: &ValidationError) -> Result<(), TestCaseError> {
    let shown = error.to_string().chars().count();
    prop_assert!(shown <= 1000, "a {shown}-character error: {error}");
    Ok(())
}

proptest! {
    #[test]
    fn skus(text in any_text()) {
        match Sku::parse(text.clone()) {
            Ok(sku) => {
                prop_assert_eq!(sku.as_str(), text.as_str());
                prop_assert!((1..=Sku::MAX_LEN).contains(&text.len()));
                prop_assert!(text.bytes().all(|b| b.is_ascii_alphanumeric() || b".:_-".contains(&b)));
            }
            Err(error) => bounded(&error)?,
        }
    }

    #[test]
    fn customer_ids(text in any_text()) {
        match CustomerId::parse(text.clone()) {
            Ok(id) => {
                prop_assert_eq!(id.as_str(), text.as_str());
                prop_assert!(text.chars().count() <= CustomerId::MAX_CHARS);
                prop_assert!(!text.chars().any(char::is_control) && !text.trim().is_empty());
            }
            Err(error) => bounded(&error)?,
        }
    }

    #[test]
    fn idempotency_keys(text in any_text()) {
        match IdempotencyKey::parse(&text) {
            Ok(key) => {
                prop_assert_eq!(key.as_str(), text.as_str());
                prop_assert!((1..=255).contains(&text.len()));
            }
            Err(error) => bounded(&error)?,
        }
    }

    #[test]
    fn product_names(text in any_text()) {
        match ProductName::parse(text.clone()) {
            Ok(name) => prop_assert_eq!(name.as_str(), text.as_str()),
            Err(error) => bounded(&error)?,
        }
    }

    #[test]
    fn order_and_deal_ids(text in any_text()) {
        match OrderId::parse(&text) {
            Ok(id) => prop_assert_eq!(OrderId::parse(&id.to_string()).unwrap(), id),
            Err(error) => bounded(&error)?,
        }
        match DealId::parse(&text) {
            Ok(id) => prop_assert_eq!(DealId::parse(&id.to_string()).unwrap(), id),
            Err(error) => bounded(&error)?,
        }
    }

    #[test]
    fn amounts(text in prop_oneof![any_text(), "-?[0-9]{0,14}(\\.[0-9]{0,4})?"]) {
        match Money::parse("price", &text) {
            Ok(money) => {
                prop_assert!(money.minor() >= 0 && money <= Money::MAX);
                prop_assert_eq!(Money::parse("price", &money.to_string()).unwrap(), money);
            }
            Err(error) => bounded(&error)?,
        }
    }

    #[test]
    fn counts(n in any::<i64>()) {
        for result in [
            Quantity::parse(n).map(|q| i64::from(q.get())),
            GroupSize::parse(n).map(|g| i64::from(g.get())),
            StockLevel::parse(n).map(|s| s.get()),
        ] {
            match result {
                Ok(value) => prop_assert_eq!(value, n),
                Err(error) => bounded(&error)?,
            }
        }
    }

    #[test]
    fn durations(text in prop_oneof![any_text(), "[0-9]{1,25}(ns|ms|s|m|h|d|days|w)( [0-9]{1,5}s)?"]) {
        if let Ok(duration) = text.parse::<HumanDuration>() {
            let printed = duration.to_string();
            prop_assert_eq!(printed.parse::<HumanDuration>().unwrap(), duration);
        }
    }
}
