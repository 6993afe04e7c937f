//! Catalog entries: what a SKU is called, what it costs, how many units exist.

use serde::Serialize;

use crate::error::ValidationError;
use crate::money::Money;
use crate::sku::Sku;

/// A product's display name: 1 to 200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ProductName(String);

impl ProductName {
    /// Validates a name.
    ///
    /// # Errors
    /// [`ValidationError::InvalidProductName`] when empty, blank, too long or holding a
    /// control character.
    pub fn parse(text: impl Into<String>) -> Result<ProductName, ValidationError> {
        let text = text.into();
        let ok = (1..=200).contains(&text.chars().count())
            && !text.trim().is_empty()
            && !text.chars().any(char::is_control);
        if ok { Ok(ProductName(text)) } else { Err(ValidationError::InvalidProductName) }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A number of units on hand (the stock of record), `0..=`[`StockLevel::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StockLevel(i64);

impl StockLevel {
    /// The most units one SKU may have.
    pub const MAX: i64 = 1_000_000_000;

    /// Validates a stock level.
    ///
    /// # Errors
    /// [`ValidationError::InvalidStock`] when negative or above the maximum.
    pub fn parse(n: i64) -> Result<StockLevel, ValidationError> {
        if (0..=Self::MAX).contains(&n) { Ok(StockLevel(n)) } else { Err(Self::invalid(n)) }
    }

    /// The error for a value that is not a valid stock level.
    pub fn invalid(got: impl ToString) -> ValidationError {
        ValidationError::InvalidStock { got: got.to_string(), max: Self::MAX }
    }

    /// The number of units.
    pub fn get(self) -> i64 {
        self.0
    }
}

/// A catalog entry as the store keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Its SKU.
    pub sku: Sku,
    /// Its display name.
    pub name: ProductName,
    /// Its unit price; orders copy it at intake.
    pub price: Money,
    /// Units on hand (stock of record), including units held by accepted orders.
    pub stock: StockLevel,
    /// Units held by accepted orders whose stock has not been deducted of record yet.
    pub reserved: i64,
}

/// Why a product's stock cannot be set: accepted orders hold more units than it would have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stock {new} is below the {held} units held by accepted orders")]
pub struct StockBelowHeld {
    /// The stock asked for.
    pub new: i64,
    /// The units accepted orders hold.
    pub held: i64,
}

impl Product {
    /// Whether this product's stock may be set to `new`: never below what accepted orders
    /// hold, or they could not all be delivered.
    ///
    /// # Errors
    /// [`StockBelowHeld`] when `new` is below `reserved`.
    pub fn check_restock(&self, new: StockLevel) -> Result<(), StockBelowHeld> {
        if new.get() < self.reserved {
            return Err(StockBelowHeld { new: new.get(), held: self.reserved });
        }
        Ok(())
    }

    /// Units that may still be sold: on hand minus held, never below zero.
    pub fn available(&self) -> i64 {
        (self.stock.get() - self.reserved).max(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn available_is_stock_minus_reserved_and_never_negative() {
        let mut product = Product {
            sku: Sku::parse("a").unwrap(),
            name: ProductName::parse("A").unwrap(),
            price: Money::ZERO,
            stock: StockLevel::parse(10).unwrap(),
            reserved: 3,
        };
        assert_eq!(product.available(), 7);
        product.reserved = 12;
        assert_eq!(product.available(), 0);
    }

    #[test]
    fn stock_may_not_drop_below_what_orders_hold() {
        let product = Product {
            sku: Sku::parse("a").unwrap(),
            name: ProductName::parse("A").unwrap(),
            price: Money::ZERO,
            stock: StockLevel::parse(10).unwrap(),
            reserved: 4,
        };
        assert!(product.check_restock(StockLevel::parse(4).unwrap()).is_ok());
        let refused = product.check_restock(StockLevel::parse(3).unwrap()).unwrap_err();
        assert_eq!(refused, StockBelowHeld { new: 3, held: 4 });
        assert_eq!(refused.to_string(), "stock 3 is below the 4 units held by accepted orders");
    }

    #[test]
    fn stock_and_name_limits_hold() {
        assert!(StockLevel::parse(0).is_ok());
        assert_eq!(StockLevel::parse(-1).unwrap_err().code(), "invalid_stock");
        assert_eq!(StockLevel::parse(StockLevel::MAX + 1).unwrap_err().code(), "invalid_stock");
        assert_eq!(ProductName::parse("").unwrap_err().code(), "invalid_name");
        assert_eq!(ProductName::parse("x".repeat(201)).unwrap_err().code(), "invalid_name");
    }
}
