//! Exact money: integer minor units (cents), never a float.
//!
//! One currency per deployment with two decimals, the common case for the shops we serve. The
//! API speaks decimal strings (`"19.99"`) so that no JSON float ever carries an amount.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::error::ValidationError;

/// An amount in minor units (cents). Non-negative; at most [`Money::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

impl Money {
    /// The largest amount a price may have: 999,999,999.99. With at most 10,000 units per
    /// line and 100 lines, an order total stays below 2^63 minor units.
    pub const MAX: Money = Money(99_999_999_999);
    /// Zero.
    pub const ZERO: Money = Money(0);
    /// [`Money::MAX`] as text, for error messages.
    pub const MAX_TEXT: &'static str = "999999999.99";

    /// Builds an amount from minor units; `None` if negative or above [`Money::MAX`].
    pub fn from_minor(minor: i64) -> Option<Money> {
        (0..=Self::MAX.0).contains(&minor).then_some(Money(minor))
    }

    /// The amount in minor units.
    pub fn minor(self) -> i64 {
        self.0
    }

    /// Parses a decimal string: digits, optionally `.` and one or two digits (`"5"`, `"5.5"`,
    /// `"19.99"`). No sign, no exponent, no spaces, no thousands separators.
    ///
    /// # Errors
    /// [`ValidationError::InvalidMoney`] naming `field` when the text is not such a number or
    /// exceeds [`Money::MAX`].
    pub fn parse(field: &'static str, text: &str) -> Result<Money, ValidationError> {
        let bad = || ValidationError::InvalidMoney {
            field,
            got: text.chars().take(40).collect(),
            max: Self::MAX_TEXT,
        };
        let (whole, frac) = match text.split_once('.') {
            Some((w, f)) => (w, f),
            None => (text, ""),
        };
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || whole.len() > 9 || !digits(whole) || !digits(frac) {
            return Err(bad());
        }
        if text.contains('.') && frac.is_empty() || frac.len() > 2 {
            return Err(bad());
        }
        // At most 9 whole digits and 2 fraction digits: the arithmetic below cannot overflow.
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let frac_minor: i64 = match frac.len() {
            0 => 0,
            1 => i64::from(frac.as_bytes()[0] - b'0') * 10,
            _ => frac.parse().map_err(|_| bad())?,
        };
        Money::from_minor(whole * 100 + frac_minor).ok_or_else(bad)
    }

    /// `self × quantity`, or `None` above [`Money::MAX`]: a total must stay an amount every
    /// part of the system can hold and parse (payment included).
    pub fn checked_mul(self, quantity: u32) -> Option<Money> {
        self.0.checked_mul(i64::from(quantity)).and_then(Money::from_minor)
    }

    /// `self + other`, or `None` above [`Money::MAX`].
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).and_then(Money::from_minor)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn parses_whole_one_and_two_decimal_amounts() {
        assert_eq!(Money::parse("price", "19.99").unwrap().minor(), 1999);
        assert_eq!(Money::parse("price", "5").unwrap().minor(), 500);
        assert_eq!(Money::parse("price", "5.5").unwrap().minor(), 550);
        assert_eq!(Money::parse("price", "0.01").unwrap().minor(), 1);
        assert_eq!(Money::parse("price", "0").unwrap().minor(), 0);
        assert_eq!(Money::parse("price", "999999999.99").unwrap(), Money::MAX);
    }

    #[test]
    fn rejects_anything_but_a_plain_decimal() {
        for bad in [
            "",
            ".",
            "1.",
            ".5",
            "-1",
            "+1",
            "1.999",
            "1e3",
            " 1",
            "1 ",
            "1,00",
            "abc",
            "NaN",
            "1000000000",
            "1.2.3",
            "٣",
        ] {
            let err = Money::parse("price", bad).unwrap_err();
            assert_eq!(err.code(), "invalid_price", "{bad:?} should be rejected");
        }
    }

    #[test]
    fn prints_two_decimals() {
        assert_eq!(Money::from_minor(1999).unwrap().to_string(), "19.99");
        assert_eq!(Money::from_minor(5).unwrap().to_string(), "0.05");
        assert_eq!(Money::from_minor(100).unwrap().to_string(), "1.00");
        assert_eq!(Money::ZERO.to_string(), "0.00");
    }

    #[test]
    fn serializes_as_a_json_string() {
        let json = serde_json::to_string(&Money::from_minor(3998).unwrap()).unwrap();
        assert_eq!(json, "\"39.98\"");
    }

    proptest! {
        #[test]
        fn printing_then_parsing_round_trips(minor in 0i64..=Money::MAX.minor()) {
            let money = Money::from_minor(minor).unwrap();
            prop_assert_eq!(Money::parse("price", &money.to_string()).unwrap(), money);
        }

        #[test]
        fn parsing_agrees_with_integer_arithmetic(whole in 0u64..1_000_000_000, cents in 0u64..100) {
            let text = format!("{whole}.{cents:02}");
            let parsed = Money::parse("price", &text).unwrap();
            prop_assert_eq!(parsed.minor() as u64, whole * 100 + cents);
        }
    }
}
