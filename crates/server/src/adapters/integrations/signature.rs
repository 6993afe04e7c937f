//! The signature ordermill puts on what it sends out:
//! `X-Ordermill-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`.
//! The timestamp is signed with the body, so a receiver that refuses old timestamps cannot be
//! fed a captured request again later; `v1` names the scheme, so a new one can be added beside it.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header's name.
pub const HEADER: &str = "X-Ordermill-Signature";

/// The header's value for `body` sent at `unix_seconds`.
pub fn sign(secret: &[u8], unix_seconds: i64, body: &[u8]) -> String {
    // HMAC accepts a key of any length (a long one is hashed first), so this cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("t={unix_seconds},v1={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_what_openssl_computes_for_the_same_input() {
        // printf '%s' '1764576000.{"event_id":"e1"}' | openssl dgst -sha256 -hmac 'whsec-test'
        assert_eq!(
            sign(b"whsec-test", 1_764_576_000, br#"{"event_id":"e1"}"#),
            "t=1764576000,v1=7cea5a6d86fea1d194b457796dea713d958bc2576ed576445be25324d0781dbf"
        );
    }

    #[test]
    fn another_secret_time_or_body_gives_another_signature() {
        let base = sign(b"s", 1, b"body");
        assert_ne!(base, sign(b"t", 1, b"body"));
        assert_ne!(base, sign(b"s", 2, b"body"));
        assert_ne!(base, sign(b"s", 1, b"bodz"));
    }
}
