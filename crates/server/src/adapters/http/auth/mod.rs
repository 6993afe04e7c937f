//! Who is calling (the trust model of docs/ARCHITECTURE.md): merchants prove themselves with
//! a merchant token, operators with the admin token, customers as `auth.customer` says (a
//! JWT, a header from a trusted gateway, or — in `open` development mode — their word).

pub mod jwt;
pub mod tokens;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderName, StatusCode};
use ordermill_core::{Clock, CustomerId};

use self::jwt::JwtVerifier;
use self::tokens::{TokenSet, bearer};
use super::AppState;
use super::error::ApiError;
use crate::startup::settings::{AuthSettings, CustomerMode};

/// The credentials a node accepts.
pub struct Auth {
    merchants: TokenSet,
    admin: TokenSet,
    customers: Customers,
}

enum Customers {
    Open,
    Jwt(Box<JwtVerifier>),
    TrustedHeader { header: HeaderName, proxies: Vec<ipnet::IpNet> },
}

impl Auth {
    /// Builds the checks from settings (reads a JWT public key file).
    ///
    /// # Errors
    /// A message naming the setting that is wrong.
    pub fn new(
        settings: &AuthSettings,
        admin_token: Option<&str>,
        clock: Arc<dyn Clock>,
    ) -> Result<Auth, String> {
        let customers = match settings.customer {
            CustomerMode::Open => Customers::Open,
            CustomerMode::Jwt => Customers::Jwt(Box::new(JwtVerifier::new(&settings.jwt, clock)?)),
            CustomerMode::TrustedHeader => Customers::TrustedHeader {
                header: HeaderName::try_from(settings.trusted_header.header.as_str())
                    .map_err(|e| format!("auth.trusted_header.header: {e}"))?,
                proxies: settings.trusted_header.networks()?,
            },
        };
        Ok(Auth {
            merchants: TokenSet::new(settings.merchant_tokens()),
            admin: TokenSet::new(admin_token),
            customers,
        })
    }

    /// Whether an admin token is configured (the admin API is enabled).
    pub fn has_admin(&self) -> bool {
        !self.admin.is_empty()
    }

    /// Whether the request carries the admin token.
    pub fn is_admin(&self, parts: &Parts) -> bool {
        bearer(&parts.headers).is_some_and(|t| self.admin.contains(t))
    }

    /// Whether the request carries a merchant token.
    pub fn is_merchant(&self, parts: &Parts) -> bool {
        bearer(&parts.headers).is_some_and(|t| self.merchants.contains(t))
    }

    /// Who the request acts for.
    ///
    /// # Errors
    /// 401 when it carries credentials that do not verify.
    pub fn caller(&self, parts: &Parts) -> Result<Caller, ApiError> {
        if self.is_admin(parts) {
            return Ok(Caller::Admin);
        }
        match &self.customers {
            Customers::Open => Ok(Caller::Unverified),
            Customers::Jwt(verifier) => match bearer(&parts.headers) {
                None => Ok(Caller::Anonymous),
                Some(token) => verifier.verify(token).map(Caller::Customer).map_err(|e| {
                    ApiError::unauthorized(
                        format!("{e}"),
                        "Bearer realm=\"ordermill\", error=\"invalid_token\"",
                    )
                }),
            },
            Customers::TrustedHeader { header, proxies } => {
                let Some(value) = parts.headers.get(header) else {
                    return Ok(Caller::Anonymous);
                };
                let peer = parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|ConnectInfo(addr)| addr.ip());
                if !peer.is_some_and(|ip| trusted(proxies, ip)) {
                    tracing::warn!(peer = peer.map(tracing::field::display), header = %header, "A request carried the customer header from a peer that is not a trusted proxy; refused.");
                    return Err(ApiError::unauthorized(
                        format!(
                            "the {header} header is only believed from the configured gateways (auth.trusted_header.proxies)"
                        ),
                        CUSTOMER_CHALLENGE,
                    ));
                }
                value
                    .to_str()
                    .ok()
                    .and_then(|v| CustomerId::parse(v).ok())
                    .map(Caller::Customer)
                    .ok_or_else(|| {
                        ApiError::unauthorized(
                            format!("the {header} header is not a valid customer id"),
                            CUSTOMER_CHALLENGE,
                        )
                    })
            }
        }
    }
}

const CUSTOMER_CHALLENGE: &str = "Bearer realm=\"ordermill\"";

/// Whether `ip` is in one of `proxies`, an IPv4 peer on a dual-stack socket included.
pub(super) fn trusted(proxies: &[ipnet::IpNet], ip: IpAddr) -> bool {
    // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    proxies.iter().any(|net| net.contains(&ip))
}

/// Who a request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// `open` mode: the customer is whoever the request names (development only).
    Unverified,
    /// A customer whose identity was verified.
    Customer(CustomerId),
    /// The admin token: reads everything.
    Admin,
    /// No credentials: public reads only.
    Anonymous,
}

impl Caller {
    /// The customer an order or a join is placed for: the verified one (a body naming
    /// another is refused 403 `customer_mismatch`), or in `open` mode the one named.
    ///
    /// # Errors
    /// 401 without identity, 403 on a mismatch, 422 when `open` mode has no name to go by.
    pub fn acting_as(
        &self,
        named: Option<Result<CustomerId, ordermill_core::ValidationError>>,
    ) -> Result<CustomerId, ApiError> {
        match (self, named) {
            (Caller::Unverified, Some(named)) => Ok(named?),
            (Caller::Unverified, None) => {
                Err(ordermill_core::ValidationError::InvalidCustomerId.into())
            }
            (Caller::Customer(me), None) => Ok(me.clone()),
            (Caller::Customer(me), Some(named)) => match named {
                Ok(named) if &named == me => Ok(named),
                _ => Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    "customer_mismatch",
                    "customer_id names another customer than your credentials; leave it out or send your own",
                )),
            },
            (Caller::Admin, _) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "customer_required",
                "the admin token reads and repairs; orders are placed by customers with their own credentials",
            )),
            (Caller::Anonymous, _) => Err(Self::who_are_you()),
        }
    }

    /// 401 for a request that needs a customer and has none.
    pub fn who_are_you() -> ApiError {
        ApiError::unauthorized(
            "this needs a customer's credentials: 'Authorization: Bearer <JWT>' (or the gateway's customer header)",
            CUSTOMER_CHALLENGE,
        )
    }

    /// Whether this caller may see what belongs to `owner`. `open` mode sees everything, as
    /// it believes everyone.
    pub fn may_see(&self, owner: &CustomerId) -> bool {
        match self {
            Caller::Unverified | Caller::Admin => true,
            Caller::Customer(me) => me == owner,
            Caller::Anonymous => false,
        }
    }
}

/// Who the rate limiter found a request to act for, or why its credentials were refused, left
/// in the request's extensions so the handler's extractor does not verify the same token
/// again (a public-key signature costs 19–55 µs, and a refused token is not remembered).
#[derive(Clone)]
pub(super) struct CheckedCaller(pub Result<Caller, ApiError>);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(CheckedCaller(checked)) = parts.extensions.get::<CheckedCaller>() {
            return checked.clone();
        }
        state.auth.caller(parts)
    }
}

/// A request that carries a merchant token (extracting it checks).
pub struct Merchant;

impl FromRequestParts<AppState> for Merchant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        const CHALLENGE: &str = "Bearer realm=\"ordermill-merchant\"";
        if state.auth.merchants.is_empty() {
            return Err(ApiError::unauthorized(
                "catalog writes need a merchant token and none is configured: start ordermill with ORDERMILL_MERCHANT_TOKEN=<secret> (or auth.merchant_tokens) and send 'Authorization: Bearer <secret>'",
                CHALLENGE,
            ));
        }
        match bearer(&parts.headers) {
            Some(token) if state.auth.merchants.contains(token) => Ok(Merchant),
            Some(_) => Err(ApiError::unauthorized("the merchant token is not valid", CHALLENGE)),
            None => Err(ApiError::unauthorized(
                "catalog writes need 'Authorization: Bearer <merchant token>'",
                CHALLENGE,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> CustomerId {
        CustomerId::parse(s).unwrap()
    }

    #[test]
    fn a_verified_customer_acts_only_as_themselves() {
        let me = Caller::Customer(id("alice"));
        assert_eq!(me.acting_as(None).unwrap(), id("alice"));
        assert_eq!(me.acting_as(Some(Ok(id("alice")))).unwrap(), id("alice"));
        assert_eq!(me.acting_as(Some(Ok(id("bob")))).unwrap_err().code(), "customer_mismatch");
        assert_eq!(Caller::Anonymous.acting_as(Some(Ok(id("bob")))).unwrap_err().status(), 401);
        assert_eq!(Caller::Admin.acting_as(Some(Ok(id("bob")))).unwrap_err().status(), 403);
        assert_eq!(Caller::Unverified.acting_as(Some(Ok(id("bob")))).unwrap(), id("bob"));
        assert_eq!(Caller::Unverified.acting_as(None).unwrap_err().code(), "invalid_customer_id");
    }

    #[test]
    fn only_the_owner_and_the_admin_see_a_customers_things() {
        assert!(Caller::Customer(id("alice")).may_see(&id("alice")));
        assert!(!Caller::Customer(id("alice")).may_see(&id("bob")));
        assert!(!Caller::Anonymous.may_see(&id("bob")));
        assert!(Caller::Admin.may_see(&id("bob")));
    }

    #[test]
    fn trusted_proxies_match_ipv4_also_when_mapped_into_ipv6() {
        let nets = vec!["10.0.0.0/8".parse().unwrap(), "127.0.0.1/32".parse().unwrap()];
        assert!(trusted(&nets, "10.1.2.3".parse().unwrap()));
        assert!(trusted(&nets, "::ffff:127.0.0.1".parse().unwrap()));
        assert!(!trusted(&nets, "11.0.0.1".parse().unwrap()));
        assert!(!trusted(&nets, "::1".parse().unwrap()));
    }
}
