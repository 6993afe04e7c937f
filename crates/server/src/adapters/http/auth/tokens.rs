//! Bearer tokens (merchant, admin), kept as SHA-256 digests and compared in constant time:
//! neither a memory dump nor response timing gives a token away.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A set of accepted tokens.
#[derive(Clone, Default)]
pub struct TokenSet(Vec<[u8; 32]>);

/// A token's SHA-256: what the sets hold, and what remembered JWTs are found by.
pub(super) fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl TokenSet {
    /// The non-empty tokens among `tokens`.
    pub fn new<'a>(tokens: impl IntoIterator<Item = &'a str>) -> Self {
        TokenSet(tokens.into_iter().filter(|t| !t.is_empty()).map(digest).collect())
    }

    /// No token configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `given` is one of the tokens. Every entry is compared, so the time taken does
    /// not say which one matched or how much of one did.
    pub fn contains(&self, given: &str) -> bool {
        let given = digest(given);
        self.0.iter().fold(subtle::Choice::from(0), |found, t| found | t.ct_eq(&given)).into()
    }
}

/// The token of an `Authorization: Bearer <token>` header, if the request has one.
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use axum::http::{HeaderMap, HeaderValue, header};

    use super::*;

    #[test]
    fn only_a_configured_non_empty_token_is_accepted() {
        let set = TokenSet::new(["alpha-token", "", "beta-token"]);
        assert!(set.contains("alpha-token") && set.contains("beta-token"));
        assert!(!set.contains("alpha-toke") && !set.contains("") && !set.contains("ALPHA-TOKEN"));
        assert!(TokenSet::new([""]).is_empty());
        assert!(!TokenSet::new([""]).contains(""));
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_needs_a_token() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_static(v));
            h
        };
        assert_eq!(bearer(&with("Bearer abc")), Some("abc"));
        assert_eq!(bearer(&with("bearer abc")), Some("abc"));
        assert_eq!(bearer(&with("Basic abc")), None);
        assert_eq!(bearer(&with("Bearer ")), None);
        assert_eq!(bearer(&HeaderMap::new()), None);
    }
}
