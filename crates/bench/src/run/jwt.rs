//! Customer tokens for a target with `auth.customer = "jwt"` (`--jwt-secret`, `--jwt-key`):
//! each order carries `Authorization: Bearer` with a token whose `sub` is the customer its body
//! names. A load task signs a token when its next customer starts, so the generator pays one
//! signature per customer (`--orders-per-customer` orders).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::header::HeaderValue;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use super::BenchError;
use super::args::{JwtAlgorithm, RunArgs};

/// How long the tokens are valid: longer than any run, so none expires in the middle of one.
const VALID_FOR: Duration = Duration::from_secs(24 * 3600);

/// Signs customer tokens with the key and claims the flags give.
pub(crate) struct Signer {
    header: Header,
    key: EncodingKey,
    exp: u64,
    iss: Option<String>,
    aud: Option<String>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("alg", &self.header.alg).finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    iss: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    aud: Option<&'a str>,
}

impl Signer {
    /// The signer the flags ask for, or `None` without `--jwt-secret` or `--jwt-key`.
    ///
    /// # Errors
    /// [`BenchError::InvalidArgs`] naming the flag when the key cannot be read, is not a key of
    /// the algorithm, or cannot sign.
    pub(crate) fn from_args(args: &RunArgs) -> Result<Option<Signer>, BenchError> {
        let invalid = |message: String| BenchError::InvalidArgs(message);
        let (algorithm, key) = match (&args.jwt_secret, &args.jwt_key, args.jwt_algorithm) {
            (Some(secret), _, _) => {
                let key = EncodingKey::from_secret(secret.as_bytes())
                    .map_err(|e| invalid(format!("--jwt-secret cannot be used: {e}")))?;
                (Algorithm::HS256, key)
            }
            (None, Some(path), Some(algorithm)) => {
                let pem = std::fs::read(path).map_err(|e| {
                    invalid(format!("cannot read --jwt-key {}: {e}", path.display()))
                })?;
                let (ours, key) = match algorithm {
                    JwtAlgorithm::Rs256 => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem)),
                    JwtAlgorithm::Es256 => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem)),
                    JwtAlgorithm::EdDsa => (Algorithm::EdDSA, EncodingKey::from_ed_pem(&pem)),
                };
                let key = key.map_err(|e| {
                    invalid(format!(
                        "--jwt-key {} is not a {ours:?} private key in PEM: {e}",
                        path.display()
                    ))
                })?;
                (ours, key)
            }
            (None, Some(_), None) => {
                return Err(invalid("--jwt-key needs --jwt-algorithm".to_owned()));
            }
            (None, None, _) => return Ok(None),
        };
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let signer = Signer {
            header: Header::new(algorithm),
            key,
            exp: (now + VALID_FOR).as_secs(),
            iss: args.jwt_issuer.clone(),
            aud: args.jwt_audience.clone(),
        };
        // A key that parses may still not sign (an RSA key too short for aws-lc): refused here,
        // before any load, rather than in every load task.
        signer.try_bearer("bench-probe").map_err(|e| {
            invalid(format!("the --jwt-secret or --jwt-key given cannot sign a token: {e}"))
        })?;
        Ok(Some(signer))
    }

    /// The algorithm's name as a token's header gives it, e.g. `ES256`.
    pub(crate) fn algorithm(&self) -> String {
        format!("{:?}", self.header.alg)
    }

    /// `Bearer <token>` for `customer`.
    pub(crate) fn bearer(&self, customer: &str) -> HeaderValue {
        self.try_bearer(customer)
            .expect("this key signed the probe token in Signer::from_args, and signing does not depend on the claims")
    }

    fn try_bearer(&self, customer: &str) -> Result<HeaderValue, jsonwebtoken::errors::Error> {
        let claims = Claims {
            sub: customer,
            exp: self.exp,
            iss: self.iss.as_deref(),
            aud: self.aud.as_deref(),
        };
        let token = jsonwebtoken::encode(&self.header, &claims, &self.key)?;
        Ok(HeaderValue::from_str(&format!("Bearer {token}"))
            .expect("a JWT is base64url and dots, which a header value takes"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use jsonwebtoken::{DecodingKey, Validation};

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../server/tests/fixtures").join(name)
    }

    #[derive(serde::Deserialize)]
    struct Read {
        sub: String,
        iss: String,
    }

    #[test]
    fn tokens_verify_with_the_target_s_key_and_name_the_customer() {
        let args = RunArgs {
            jwt_key: Some(fixture("ed25519.key")),
            jwt_algorithm: Some(JwtAlgorithm::EdDsa),
            jwt_issuer: Some("shop".into()),
            ..RunArgs::default()
        };
        let signer = Signer::from_args(&args).unwrap().unwrap();
        let bearer = signer.bearer("bench-3-7");
        let token = bearer.to_str().unwrap().strip_prefix("Bearer ").unwrap();
        let public = DecodingKey::from_ed_pem(&std::fs::read(fixture("ed25519.pub")).unwrap());
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&["shop"]);
        let claims = jsonwebtoken::decode::<Read>(token, &public.unwrap(), &validation).unwrap();
        assert_eq!((claims.claims.sub.as_str(), claims.claims.iss.as_str()), ("bench-3-7", "shop"));
    }

    #[test]
    fn a_key_of_another_algorithm_is_refused_naming_the_flag() {
        let args = RunArgs {
            jwt_key: Some(fixture("es256.key")),
            jwt_algorithm: Some(JwtAlgorithm::Rs256),
            ..RunArgs::default()
        };
        let message = Signer::from_args(&args).unwrap_err().to_string();
        assert!(message.contains("--jwt-key") && message.contains("RS256"), "{message}");
        assert!(Signer::from_args(&RunArgs::default()).unwrap().is_none());
    }
}
