//! Customer JWTs: the signature checked with the one configured algorithm and key, `exp` and
//! `nbf` against the service's clock (so tests can fake time), `iss`/`aud` when configured.

use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ordermill_core::{Clock, CustomerId};
use serde::Deserialize;

use crate::startup::settings::{JwtAlgorithm, JwtSettings};

/// Verifies customer tokens.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    leeway_secs: i64,
    algorithm: JwtAlgorithm,
    clock: Arc<dyn Clock>,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: i64,
    #[serde(default)]
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
                (Algorithm::RS256, DecodingKey::from_rsa_pem(&pem()?).map_err(bad_key)?)
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
        Ok(JwtVerifier { key, validation, leeway_secs, algorithm: settings.algorithm, clock })
    }

    /// The customer a token speaks for.
    ///
    /// # Errors
    /// [`JwtError`] saying what is wrong with it.
    pub fn verify(&self, token: &str) -> Result<CustomerId, JwtError> {
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
        let now = self.clock.now().0 / 1000;
        let claims = data.claims;
        if claims.exp.saturating_add(self.leeway_secs) < now {
            return Err(JwtError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf.saturating_sub(self.leeway_secs) > now) {
            return Err(JwtError::NotYetValid);
        }
        CustomerId::parse(claims.sub)
            .map_err(|_| JwtError::Malformed("sub is not a valid customer id".into()))
    }
}
