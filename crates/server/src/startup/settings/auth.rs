//! Who may do what (`[auth]`): merchant tokens for catalog writes, how a customer proves who
//! they are, and the protected-mode override.

use std::net::IpAddr;
use std::path::PathBuf;

use ordermill_core::HumanDuration;
use serde::{Deserialize, Serialize};

use super::Secret;

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSettings {
    /// Bearer tokens that may change products, prices, stock and limits and open deals (env
    /// `ORDERMILL_MERCHANT_TOKEN`, several separated by commas). None: catalog writes are
    /// refused with 401.
    pub merchant_tokens: Vec<Secret>,
    /// How a customer proves who they are: `open` (the body's `customer_id` is believed;
    /// development only), `jwt` or `trusted_header`.
    pub customer: CustomerMode,
    /// `customer = "jwt"`: how tokens are verified.
    pub jwt: JwtSettings,
    /// `customer = "trusted_header"`: which header, from which proxies.
    pub trusted_header: TrustedHeaderSettings,
    /// Listen beyond loopback although anyone may act as anyone (`open` mode, or no
    /// merchant token). Refused without it (protected mode); `--insecure-open` sets it.
    pub insecure_open: bool,
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            merchant_tokens: Vec::new(),
            customer: CustomerMode::Open,
            jwt: JwtSettings::default(),
            trusted_header: TrustedHeaderSettings::default(),
            insecure_open: false,
        }
    }
}

/// How a customer proves who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum CustomerMode {
    /// The body's `customer_id` is believed: anyone may act as anyone. Development only;
    /// refused beyond loopback (protected mode).
    #[default]
    Open,
    /// `Authorization: Bearer <JWT>`; the customer is its `sub`.
    Jwt,
    /// A header set by an authenticating gateway, believed only from `trusted_header.proxies`.
    TrustedHeader,
}

/// The JWT algorithms accepted (one per deployment: a token naming another is refused, so
/// `alg: none` and algorithm confusion cannot get through).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `jwt.secret`.
    #[default]
    HS256,
    /// RSA PKCS#1 v1.5 SHA-256, public key in `jwt.public_key_file`.
    RS256,
    /// ECDSA P-256 SHA-256, public key in `jwt.public_key_file`.
    ES256,
    /// Ed25519, public key in `jwt.public_key_file`.
    EdDSA,
}

/// `[auth.jwt]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JwtSettings {
    /// `HS256`, `RS256`, `ES256` or `EdDSA`.
    pub algorithm: JwtAlgorithm,
    /// HS256: the shared secret (env `ORDERMILL_AUTH__JWT__SECRET`).
    pub secret: Option<Secret>,
    /// RS256/ES256/EdDSA: the issuer's public key, PEM.
    pub public_key_file: Option<PathBuf>,
    /// When set, the token's `iss` must equal it.
    pub issuer: Option<String>,
    /// When set, the token's `aud` must contain it.
    pub audience: Option<String>,
    /// Clock difference tolerated on `exp` and `nbf`.
    pub leeway: HumanDuration,
}

impl Default for JwtSettings {
    fn default() -> Self {
        JwtSettings {
            algorithm: JwtAlgorithm::HS256,
            secret: None,
            public_key_file: None,
            issuer: None,
            audience: None,
            leeway: HumanDuration::from_secs(30),
        }
    }
}

/// `[auth.trusted_header]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrustedHeaderSettings {
    /// The header carrying the authenticated customer id.
    pub header: String,
    /// Peers (CIDRs, e.g. `"10.0.0.0/8"`, `"127.0.0.1/32"`) whose header is believed; a
    /// request from any other peer carrying it, or not carrying it, is refused 401.
    pub proxies: Vec<String>,
}

impl Default for TrustedHeaderSettings {
    fn default() -> Self {
        TrustedHeaderSettings { header: "x-customer-id".into(), proxies: Vec::new() }
    }
}

impl TrustedHeaderSettings {
    /// The proxies as networks.
    ///
    /// # Errors
    /// The first entry that is not a CIDR or an address.
    pub fn networks(&self) -> Result<Vec<ipnet::IpNet>, String> {
        networks("auth.trusted_header.proxies", &self.proxies)
    }
}

/// `entries` (CIDRs or addresses) of the setting `key` as networks.
///
/// # Errors
/// The first entry that is neither, named with the key.
pub fn networks(key: &str, entries: &[String]) -> Result<Vec<ipnet::IpNet>, String> {
    entries
        .iter()
        .map(|p| {
            p.parse::<ipnet::IpNet>()
                .or_else(|_| p.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    format!("{key}: {p:?} is not a CIDR like \"10.0.0.0/8\" or an address")
                })
        })
        .collect()
}

impl AuthSettings {
    /// The configured merchant tokens, without empty ones.
    pub fn merchant_tokens(&self) -> impl Iterator<Item = &str> {
        self.merchant_tokens.iter().map(Secret::expose).filter(|t| !t.is_empty())
    }

    /// Checks what the types cannot.
    ///
    /// # Errors
    /// A message naming the key to set.
    pub fn validate(&self) -> Result<(), String> {
        match self.customer {
            CustomerMode::Open => {}
            CustomerMode::Jwt => match self.jwt.algorithm {
                JwtAlgorithm::HS256 => {
                    let secret = self.jwt.secret.as_ref().map_or(0, |s| s.expose().len());
                    if secret < 32 {
                        return Err("auth.customer = \"jwt\" with HS256 needs auth.jwt.secret of at least 32 bytes (env ORDERMILL_AUTH__JWT__SECRET)".into());
                    }
                }
                _ if self.jwt.public_key_file.is_none() => {
                    return Err(format!(
                        "auth.jwt.algorithm = \"{:?}\" needs auth.jwt.public_key_file (the issuer's public key, PEM)",
                        self.jwt.algorithm
                    ));
                }
                _ => {}
            },
            CustomerMode::TrustedHeader => {
                if self.trusted_header.proxies.is_empty() {
                    return Err("auth.customer = \"trusted_header\" needs auth.trusted_header.proxies: the addresses of the gateways that set the header".into());
                }
                self.trusted_header.networks()?;
                axum::http::HeaderName::try_from(self.trusted_header.header.as_str()).map_err(
                    |_| {
                        format!(
                            "auth.trusted_header.header: {:?} is not a header name",
                            self.trusted_header.header
                        )
                    },
                )?;
            }
        }
        Ok(())
    }

    /// Why listening on `ip` would let anyone in, or `None` when it is safe (loopback, or
    /// both a merchant token and a customer mode that verifies).
    pub fn unprotected(&self, ip: IpAddr) -> Option<String> {
        if ip.is_loopback() {
            return None;
        }
        let mut missing = Vec::new();
        if self.customer == CustomerMode::Open {
            missing.push("auth.customer = \"jwt\" or \"trusted_header\" (in \"open\" mode anyone may order as any customer)");
        }
        if self.merchant_tokens().next().is_none() {
            missing.push("a merchant token in auth.merchant_tokens or ORDERMILL_MERCHANT_TOKEN");
        }
        (!missing.is_empty()).then(|| missing.join(" and "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protected_mode_names_each_missing_setting_beyond_loopback_only() {
        let open = AuthSettings::default();
        assert_eq!(open.unprotected("127.0.0.1".parse().unwrap()), None);
        assert_eq!(open.unprotected("::1".parse().unwrap()), None);
        let why = open.unprotected("0.0.0.0".parse().unwrap()).unwrap();
        assert!(why.contains("auth.customer") && why.contains("ORDERMILL_MERCHANT_TOKEN"), "{why}");
        let safe = AuthSettings {
            merchant_tokens: vec![Secret::new("m")],
            customer: CustomerMode::TrustedHeader,
            ..AuthSettings::default()
        };
        assert_eq!(safe.unprotected("10.0.0.5".parse().unwrap()), None);
        let empty_token = AuthSettings { merchant_tokens: vec![Secret::new("")], ..safe };
        assert!(empty_token.unprotected("10.0.0.5".parse().unwrap()).is_some());
    }

    #[test]
    fn each_mode_requires_what_it_verifies_with() {
        let jwt = AuthSettings { customer: CustomerMode::Jwt, ..AuthSettings::default() };
        assert!(jwt.validate().unwrap_err().contains("auth.jwt.secret"));
        let short = AuthSettings {
            jwt: JwtSettings { secret: Some(Secret::new("short")), ..JwtSettings::default() },
            ..jwt.clone()
        };
        assert!(short.validate().is_err());
        let rs = AuthSettings {
            jwt: JwtSettings { algorithm: JwtAlgorithm::RS256, ..JwtSettings::default() },
            ..jwt
        };
        assert!(rs.validate().unwrap_err().contains("public_key_file"));
        let header =
            AuthSettings { customer: CustomerMode::TrustedHeader, ..AuthSettings::default() };
        assert!(header.validate().unwrap_err().contains("proxies"));
        let bad_cidr = AuthSettings {
            trusted_header: TrustedHeaderSettings {
                proxies: vec!["10.0.0.0/33".into()],
                ..TrustedHeaderSettings::default()
            },
            ..header.clone()
        };
        assert!(bad_cidr.validate().unwrap_err().contains("10.0.0.0/33"));
        let good = AuthSettings {
            trusted_header: TrustedHeaderSettings {
                proxies: vec!["10.0.0.0/8".into(), "127.0.0.1".into()],
                ..TrustedHeaderSettings::default()
            },
            ..header
        };
        assert_eq!(good.validate(), Ok(()));
    }
}
