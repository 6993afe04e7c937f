//! Customer JWTs: the signature checked with the one configured algorithm and key, `exp` and
//! `nbf` against the service's clock (so tests can fake time), `iss`/`aud` when configured.
//!
//! A public-key signature costs 19–55 µs to check (RS256 to ES256 on the CI machine; HS256
//! ~1 µs), as much as the rest of an order's intake, and a customer sends the same token with
//! every request: polling an order until it is confirmed, listing their orders, ordering again.
//! So a token whose signature verified is remembered by its SHA-256 with the claims it proved,
//! and a later request with the very same text only has its time claims checked again. A token
//! that did not verify is never remembered, and any other text — one byte of the signature
//! changed included — hashes elsewhere and is verified in full.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ordermill_core::{Clock, CustomerId};
use serde::Deserialize;

use super::tokens::digest;
use crate::startup::settings::{JwtAlgorithm, JwtSettings};

/// Verified tokens a node remembers: ~200 bytes each with the cache's own bookkeeping, so
/// ~13 MiB when full; past it the least useful are forgotten (and verified again if they come
/// back).
const REMEMBERED_TOKENS: u64 = 65_536;
/// Wall time a verified token stays remembered at most, whatever its `exp`: a token that stops
/// coming frees its room. Its `exp` and `nbf` are checked on the service clock at every use.
const REMEMBER_FOR: Duration = Duration::from_secs(600);

/// Verifies customer tokens.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    leeway_secs: i64,
    algorithm: JwtAlgorithm,
    clock: Arc<dyn Clock>,
    /// By the token's SHA-256; `None` for HS256, whose check (~1 µs) costs less than this.
    remembered: Option<moka::sync::Cache<[u8; 32], Verified>>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
}

/// What a token's signature proved.
#[derive(Clone)]
struct Verified {
    customer: CustomerId,
    exp: i64,
    nbf: Option<i64>,
}

/// Why a token was refused; the text goes to the client (it names no secret).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwtError {
    /// Past `exp` (beyond the leeway).
    #[error("the token has expired; get a new one")]
    Expired,
    /// Before `nbf` (beyond the leeway).
    #[error("the token is not valid yet (nbf is in the future)")]
    NotYetValid,
    /// Signed with another algorithm than the configured one (`none` included).
    #[error("the token's algorithm is not the one this service accepts ({0:?})")]
    WrongAlgorithm(JwtAlgorithm),
    /// The signature does not verify with the configured key.
    #[error("the token's signature does not verify")]
    BadSignature,
    /// `iss` or `aud` is not the configured one.
    #[error("the token was issued by or for someone else (iss/aud)")]
    WrongParty,
    /// Not a JWT, or missing `sub`/`exp`, or `sub` not a valid customer id.
    #[error("the token is malformed or lacks sub/exp: {0}")]
    Malformed(String),
}

impl JwtVerifier {
    /// Builds the verifier, reading the public key file for RS256/ES256/EdDSA.
    ///
    /// # Errors
    /// A message naming the setting when the key is missing or unreadable.
    pub fn new(settings: &JwtSettings, clock: Arc<dyn Clock>) -> Result<Self, String> {
        let pem = || -> Result<Vec<u8>, String> {
            let path = settings
                .public_key_file
                .as_ref()
                .ok_or_else(|| "auth.jwt.public_key_file is not set".to_string())?;
            std::fs::read(path).map_err(|e| {
                format!("cannot read auth.jwt.public_key_file {}: {e}", path.display())
            })
        };
        let bad_key = |e: jsonwebtoken::errors::Error| {
            format!(
                "auth.jwt.public_key_file is not a {:?} public key in PEM: {e}",
                settings.algorithm
            )
        };
        let (algorithm, key) = match settings.algorithm {
            JwtAlgorithm::HS256 => {
                let secret = settings
                    .secret
                    .as_ref()
                    .ok_or_else(|| "auth.jwt.secret is not set".to_string())?;
                let key = DecodingKey::from_secret(secret.expose().as_bytes())
                    .map_err(|e| format!("auth.jwt.secret cannot be used: {e}"))?;
                (Algorithm::HS256, key)
            }
            JwtAlgorithm::RS256 => {
                let key = DecodingKey::from_rsa_pem(&pem()?).map_err(bad_key)?;
                check_rsa_size(&key)?;
                (Algorithm::RS256, key)
            }
            JwtAlgorithm::ES256 => {
                (Algorithm::ES256, DecodingKey::from_ec_pem(&pem()?).map_err(bad_key)?)
            }
            JwtAlgorithm::EdDSA => {
                (Algorithm::EdDSA, DecodingKey::from_ed_pem(&pem()?).map_err(bad_key)?)
            }
        };
        let mut validation = Validation::new(algorithm);
        // exp and nbf are checked against the service's clock below, not the library's.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.set_required_spec_claims(&["exp", "sub"]);
        if let Some(issuer) = &settings.issuer {
            validation.set_issuer(&[issuer]);
        }
        match &settings.audience {
            Some(audience) => validation.set_audience(&[audience]),
            None => validation.validate_aud = false,
        }
        let leeway_secs = i64::try_from(settings.leeway.get().as_secs()).unwrap_or(i64::MAX);
        let remembered = (algorithm != Algorithm::HS256).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(REMEMBERED_TOKENS)
                .time_to_live(REMEMBER_FOR)
                .build()
        });
        Ok(JwtVerifier {
            key,
            validation,
            leeway_secs,
            algorithm: settings.algorithm,
            clock,
            remembered,
        })
    }

    /// The customer a token speaks for.
    ///
    /// # Errors
    /// [`JwtError`] saying what is wrong with it.
    pub fn verify(&self, token: &str) -> Result<CustomerId, JwtError> {
        let Some(remembered) = &self.remembered else {
            return self.in_time(self.decode(token)?);
        };
        let digest = digest(token);
        let verified = match remembered.get(&digest) {
            Some(verified) => verified,
            None => {
                let verified = self.decode(token)?;
                remembered.insert(digest, verified.clone());
                verified
            }
        };
        self.in_time(verified)
    }

    /// The signature, the algorithm, `iss`/`aud` and the claims' shape: what does not change
    /// with time.
    fn decode(&self, token: &str) -> Result<Verified, JwtError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    JwtError::WrongAlgorithm(self.algorithm)
                }
                ErrorKind::InvalidSignature => JwtError::BadSignature,
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => JwtError::WrongParty,
                other => JwtError::Malformed(format!("{other:?}")),
            },
        )?;
        let Claims { sub, exp, nbf } = data.claims;
        let customer = CustomerId::parse(sub)
            .map_err(|_| JwtError::Malformed("sub is not a valid customer id".into()))?;
        Ok(Verified { customer, exp, nbf })
    }

    /// `exp` and `nbf` against the service clock, at every use of a token.
    fn in_time(&self, verified: Verified) -> Result<CustomerId, JwtError> {
        let now = self.clock.now().0 / 1000;
        if verified.exp.saturating_add(self.leeway_secs) < now {
            return Err(JwtError::Expired);
        }
        if verified.nbf.is_some_and(|nbf| nbf.saturating_sub(self.leeway_secs) > now) {
            return Err(JwtError::NotYetValid);
        }
        Ok(verified.customer)
    }
}

/// RS256 signatures are verified (by aws-lc) with 2,048- to 8,192-bit keys only: with a key
/// of another size every token would be refused as a bad signature, so a node refuses to start
/// instead, saying why.
fn check_rsa_size(key: &DecodingKey) -> Result<(), String> {
    let bits = key
        .try_get_as_bytes()
        .ok()
        .and_then(|der| aws_lc_rs::rsa::PublicKey::from_der(der).ok())
        .map(|public| {
            let modulus = public.modulus().big_endian_without_leading_zero();
            modulus.len() * 8 - modulus.first().map_or(0, |top| top.leading_zeros() as usize)
        })
        .ok_or_else(|| "auth.jwt.public_key_file is not an RSA public key".to_string())?;
    if (2048..=8192).contains(&bits) {
        Ok(())
    } else {
        Err(format!(
            "auth.jwt.public_key_file holds a {bits}-bit RSA key; RS256 tokens are verified with \
             2048- to 8192-bit keys only: have the issuer sign with such a key"
        ))
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use ordermill_core::{ManualClock, UnixMillis};
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;
    use crate::startup::settings::Secret;

    const SECRET: &str = "jwt-proptest-secret";
    const NOW_SECS: i64 = 1_800_000_000;

    fn verifier() -> JwtVerifier {
        let settings = JwtSettings { secret: Some(Secret::new(SECRET)), ..JwtSettings::default() };
        let clock = Arc::new(ManualClock::new(UnixMillis(NOW_SECS * 1000)));
        JwtVerifier::new(&settings, clock).unwrap()
    }

    proptest! {
        // Whatever a client puts after `Bearer `: a refusal, never a panic.
        #[test]
        fn any_token_text_is_refused(token in "[ -~]{0,300}") {
            prop_assert!(verifier().verify(&token).is_err());
        }

        // What HTTP fuzzing cannot make: tokens whose signature is right, with claims of any
        // value. Accepted exactly when `sub` is a valid customer id and the time checks hold.
        #[test]
        fn a_signed_token_is_accepted_only_when_its_claims_hold(
            sub in prop_oneof![
                "[a-z0-9-]{1,20}".prop_map(serde_json::Value::from),
                "[ -~蟹]{0,80}".prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                Just(serde_json::Value::Null),
            ],
            exp in prop_oneof![any::<i64>(), (NOW_SECS - 100)..(NOW_SECS + 100)],
            nbf in proptest::option::of(prop_oneof![any::<i64>(), (NOW_SECS - 100)..(NOW_SECS + 100)]),
        ) {
            let mut claims = json!({"sub": sub, "exp": exp});
            if let Some(nbf) = nbf {
                claims["nbf"] = json!(nbf);
            }
            let key = EncodingKey::from_secret(SECRET.as_bytes()).unwrap();
            let token = encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap();
            let leeway = 30;
            let valid_sub = sub.as_str().and_then(|s| CustomerId::parse(s).ok());
            let in_time = exp.saturating_add(leeway) >= NOW_SECS
                && nbf.is_none_or(|nbf| nbf.saturating_sub(leeway) <= NOW_SECS);
            match verifier().verify(&token) {
                Ok(customer) => {
                    prop_assert!(in_time, "accepted outside its time: {claims}");
                    prop_assert_eq!(Some(customer), valid_sub);
                }
                Err(_) => prop_assert!(valid_sub.is_none() || !in_time, "refused: {claims}"),
            }
        }
    }

    /// An EdDSA verifier on the test fixtures' key (crates/server/tests/fixtures), its clock,
    /// and a signer with the matching private key.
    fn remembering() -> (JwtVerifier, Arc<ManualClock>, impl Fn(serde_json::Value) -> String) {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let settings = JwtSettings {
            algorithm: JwtAlgorithm::EdDSA,
            public_key_file: Some(fixtures.join("ed25519.pub")),
            ..JwtSettings::default()
        };
        let clock = Arc::new(ManualClock::new(UnixMillis(NOW_SECS * 1000)));
        let verifier = JwtVerifier::new(&settings, clock.clone()).unwrap();
        let key = EncodingKey::from_ed_pem(&std::fs::read(fixtures.join("ed25519.key")).unwrap())
            .unwrap();
        let sign = move |claims| encode(&Header::new(Algorithm::EdDSA), &claims, &key).unwrap();
        (verifier, clock, sign)
    }

    fn is_remembered(verifier: &JwtVerifier, token: &str) -> bool {
        verifier.remembered.as_ref().is_some_and(|cache| cache.contains_key(&digest(token)))
    }

    #[test]
    fn a_remembered_token_is_refused_once_it_expires() {
        let (verifier, clock, sign) = remembering();
        let token = sign(json!({"sub": "ann", "exp": NOW_SECS + 60}));
        assert_eq!(verifier.verify(&token).unwrap().as_str(), "ann");
        assert!(is_remembered(&verifier, &token));
        assert_eq!(verifier.verify(&token).unwrap().as_str(), "ann", "from memory");
        clock.advance(Duration::from_secs(60 + 31));
        assert_eq!(verifier.verify(&token), Err(JwtError::Expired));
    }

    #[test]
    fn a_remembered_token_counts_from_its_nbf() {
        let (verifier, clock, sign) = remembering();
        let token = sign(json!({"sub": "ann", "exp": NOW_SECS + 600, "nbf": NOW_SECS + 100}));
        assert_eq!(verifier.verify(&token), Err(JwtError::NotYetValid));
        clock.advance(Duration::from_secs(100));
        assert_eq!(verifier.verify(&token).unwrap().as_str(), "ann");
    }

    #[test]
    fn only_the_very_text_that_verified_is_taken_from_memory() {
        let (verifier, _clock, sign) = remembering();
        let token = sign(json!({"sub": "ann", "exp": NOW_SECS + 600}));
        assert!(verifier.verify(&token).is_ok());
        // The same header and claims with one character of the signature changed.
        let signature_at = token.rfind('.').unwrap() + 10;
        let mut forged = token.clone().into_bytes();
        forged[signature_at] = if forged[signature_at] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert_eq!(verifier.verify(&forged), Err(JwtError::BadSignature));
        assert!(!is_remembered(&verifier, &forged), "a refused token is never remembered");
        let other = sign(json!({"sub": "bob", "exp": NOW_SECS + 600}));
        assert_eq!(verifier.verify(&other).unwrap().as_str(), "bob");
    }

    #[test]
    fn an_rsa_key_outside_2048_to_8192_bits_is_refused_at_start_naming_its_size() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let settings = |file: &str| JwtSettings {
            algorithm: JwtAlgorithm::RS256,
            public_key_file: Some(fixtures.join(file)),
            ..JwtSettings::default()
        };
        let clock = || Arc::new(ManualClock::new(UnixMillis(NOW_SECS * 1000)));
        assert!(JwtVerifier::new(&settings("rs256.pub"), clock()).is_ok(), "2048 bits");
        let refused = JwtVerifier::new(&settings("rs1024.pub"), clock()).err().unwrap();
        assert!(refused.contains("1024-bit") && refused.contains("public_key_file"), "{refused}");
    }

    #[test]
    fn hs256_tokens_are_verified_every_time() {
        assert!(verifier().remembered.is_none(), "HMAC costs less than remembering it");
    }
}
