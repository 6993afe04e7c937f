//! Stock-keeping unit identifiers.

use std::fmt;

use serde::Serialize;

use crate::error::ValidationError;

/// A SKU: 1 to 64 characters of `A-Z a-z 0-9 . _ : -`, so it is safe in a URL path, a log
/// line, a Redis key and a SQL parameter without escaping surprises.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Sku(String);

impl Sku {
    /// The longest SKU accepted.
    pub const MAX_LEN: usize = 64;

    /// Validates and wraps a SKU.
    ///
    /// # Errors
    /// [`ValidationError::InvalidSku`] when empty, too long or holding other characters.
    pub fn parse(text: impl Into<String>) -> Result<Sku, ValidationError> {
        let text = text.into();
        let ok = !text.is_empty()
            && text.len() <= Self::MAX_LEN
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(Sku(text))
        } else {
            Err(ValidationError::InvalidSku(text.chars().take(80).collect()))
        }
    }

    /// The SKU as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sku {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::borrow::Borrow<str> for Sku {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_url_safe_identifiers() {
        for ok in ["sku-1", "A.B_C:D-9", &"x".repeat(64)] {
            assert_eq!(Sku::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_empty_long_and_unsafe_identifiers() {
        for bad in ["", "has space", "slash/", "é", "quote\"", &"x".repeat(65)] {
            assert_eq!(Sku::parse(bad).unwrap_err().code(), "invalid_sku", "{bad:?}");
        }
    }
}
