//! The signature ordermill puts on what it sends out, and checks on payment callbacks:
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

/// Why a signed request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No header, one that does not parse, or no `v1` that matches the body.
    #[error("the X-Ordermill-Signature header is missing or does not match the body")]
    Bad,
    /// A valid signature made further than the tolerance from now: a replay, or a clock off.
    #[error("the X-Ordermill-Signature timestamp is more than {0} s from this server's time")]
    Stale(i64),
}

/// Checks `header` (`t=…,v1=…`, several `v1` allowed while a secret is rotated) against `body`
/// and `secret`, then that `t` is within `tolerance_secs` of `now_secs`. The HMAC is compared
/// in constant time.
///
/// # Errors
/// [`Refused::Bad`] or [`Refused::Stale`].
pub fn verify(
    secret: &[u8],
    header: Option<&str>,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> Result<(), Refused> {
    let header = header.ok_or(Refused::Bad)?;
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t.parse::<i64>().map_err(|_| Refused::Bad)?),
            Some(("v1", hex_mac)) => {
                candidates.push(hex::decode(hex_mac).map_err(|_| Refused::Bad)?)
            }
            _ => {}
        }
    }
    let t = timestamp.ok_or(Refused::Bad)?;
    let matches = candidates.iter().any(|candidate| {
        // As in `sign`: HMAC takes keys of any length.
        #[allow(clippy::expect_used)]
        let mut mac =
            Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(candidate).is_ok()
    });
    if !matches {
        return Err(Refused::Bad);
    }
    if now_secs.abs_diff(t) > tolerance_secs.unsigned_abs() {
        return Err(Refused::Stale(tolerance_secs));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_for_its_secret_body_and_a_recent_time() {
        let body = br#"{"order_id":"o1","status":"paid"}"#;
        let header = sign(b"cb-secret", 1_000_000, body);
        assert_eq!(verify(b"cb-secret", Some(&header), body, 1_000_100, 300), Ok(()));
        assert_eq!(verify(b"cb-secret", Some(&header), body, 999_700, 300), Ok(()));
        assert_eq!(verify(b"other", Some(&header), body, 1_000_000, 300), Err(Refused::Bad));
        assert_eq!(verify(b"cb-secret", Some(&header), b"{}", 1_000_000, 300), Err(Refused::Bad));
        assert_eq!(verify(b"cb-secret", None, body, 1_000_000, 300), Err(Refused::Bad));
        for bad in ["", "t=1000000", "v1=00", "t=x,v1=00", "t=1000000,v1=zz"] {
            assert_eq!(verify(b"cb-secret", Some(bad), body, 1_000_000, 300), Err(Refused::Bad));
        }
        assert_eq!(
            verify(b"cb-secret", Some(&header), body, 1_000_301, 300),
            Err(Refused::Stale(300))
        );
        let rotated = format!("{header},v1={}", "ab".repeat(32));
        assert_eq!(verify(b"cb-secret", Some(&rotated), body, 1_000_000, 300), Ok(()));
    }

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

    // What HTTP fuzzing cannot send: headers carrying a valid HMAC. Any header is refused or
    // verified without a panic; a real signature verifies whatever the body, with junk parts
    // around it; one changed byte of the body, or a time beyond the tolerance, refuses it.
    proptest::proptest! {
        #[test]
        fn any_header_is_refused_or_verified_never_a_panic(
            header in ".{0,200}",
            body in proptest::collection::vec(proptest::num::u8::ANY, 0..200),
            now in proptest::num::i64::ANY,
            tolerance in proptest::num::i64::ANY,
        ) {
            let _ = verify(b"secret", Some(&header), &body, now, tolerance);
        }

        #[test]
        fn a_real_signature_verifies_and_a_changed_body_does_not(
            secret in proptest::collection::vec(proptest::num::u8::ANY, 0..80),
            body in proptest::collection::vec(proptest::num::u8::ANY, 1..300),
            t in -10_000_000_000i64..10_000_000_000,
            skew in -300i64..=300,
            junk in "x[a-z0-9]{0,4}=[a-z0-9]{0,8}",
            flip in proptest::num::usize::ANY,
        ) {
            let header = format!("{junk}, {} ,{junk}", sign(&secret, t, &body));
            proptest::prop_assert_eq!(verify(&secret, Some(&header), &body, t + skew, 300), Ok(()));
            proptest::prop_assert_eq!(
                verify(&secret, Some(&header), &body, t + 301, 300),
                Err(Refused::Stale(300))
            );
            let mut changed = body.clone();
            let at = flip % changed.len();
            changed[at] ^= 0x01;
            proptest::prop_assert_eq!(
                verify(&secret, Some(&header), &changed, t, 300),
                Err(Refused::Bad)
            );
        }
    }
}
