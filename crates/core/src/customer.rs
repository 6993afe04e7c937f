//! Customer identifiers, as the shop knows them.

use serde::Serialize;

use crate::error::ValidationError;

/// A customer id: 1 to 64 printable characters (any script, no control characters). We do not
/// own customers; this is the shop's identifier, kept as given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct CustomerId(String);

impl CustomerId {
    /// The most characters accepted.
    pub const MAX_CHARS: usize = 64;

    /// Validates and wraps a customer id.
    ///
    /// # Errors
    /// [`ValidationError::InvalidCustomerId`] when empty, too long, all blank, or holding a
    /// control character.
    pub fn parse(text: impl Into<String>) -> Result<CustomerId, ValidationError> {
        let text = text.into();
        let chars = text.chars().count();
        let ok = (1..=Self::MAX_CHARS).contains(&chars)
            && !text.chars().any(char::is_control)
            && !text.trim().is_empty();
        if ok { Ok(CustomerId(text)) } else { Err(ValidationError::InvalidCustomerId) }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_printable_ids_in_any_script() {
        for ok in ["c-1", "客户-42", "a b", &"x".repeat(64)] {
            assert!(CustomerId::parse(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn rejects_empty_blank_long_and_control_characters() {
        for bad in ["", "   ", "tab\there", "nl\n", &"x".repeat(65)] {
            assert_eq!(CustomerId::parse(bad).unwrap_err().code(), "invalid_customer_id");
        }
    }
}
