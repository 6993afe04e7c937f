//! How many units of a SKU an order line asks for.

use serde::Serialize;

use crate::error::ValidationError;

/// A quantity from 1 to [`Quantity::MAX`] units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    /// The largest quantity on one order line.
    pub const MAX: u32 = 10_000;

    /// One unit (what a group-buy member gets).
    pub const ONE: Quantity = Quantity(1);

    /// Validates a quantity given as any integer.
    ///
    /// # Errors
    /// [`ValidationError::InvalidQuantity`] outside `1..=10000`.
    pub fn parse(n: i64) -> Result<Quantity, ValidationError> {
        if (1..=i64::from(Self::MAX)).contains(&n) {
            // In 1..=10000, so it fits in u32.
            Ok(Quantity(n as u32))
        } else {
            Err(Self::invalid(n))
        }
    }

    /// The error for a value that is not a valid quantity (a float, a huge number, text).
    pub fn invalid(got: impl ToString) -> ValidationError {
        ValidationError::InvalidQuantity { got: got.to_string(), max: Self::MAX }
    }

    /// The number of units.
    pub fn get(self) -> u32 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn bounds_are_inclusive() {
        assert_eq!(Quantity::parse(1).unwrap().get(), 1);
        assert_eq!(Quantity::parse(10_000).unwrap().get(), 10_000);
        assert_eq!(Quantity::parse(0).unwrap_err().code(), "invalid_quantity");
        assert_eq!(Quantity::parse(10_001).unwrap_err().code(), "invalid_quantity");
        assert_eq!(Quantity::parse(-1).unwrap_err().code(), "invalid_quantity");
    }

    proptest! {
        #[test]
        fn accepts_exactly_the_range(n in any::<i64>()) {
            prop_assert_eq!(Quantity::parse(n).is_ok(), (1..=10_000).contains(&n));
        }
    }
}
