//! Per-client request budgets on `/api/*` (`rate_limit`): one bucket per verified customer,
//! per client address when the request has none (and in `open` mode, where nobody is
//! verified). Merchant and admin requests pass uncounted. Over budget: 429 `rate_limited`
//! with `Retry-After`.
//!
//! A shared budget that cannot be read (Redis down) lets the request through: the limit
//! protects the service, and refusing everyone would turn a cache outage into a full one.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ordermill_core::ports::RateLimiter;

use super::AppState;
use super::auth::{Caller, CheckedCaller};
use super::error::ApiError;

/// The budgets and whose word on the client's address is taken.
pub struct RateLimit {
    /// The budgets.
    pub limiter: Arc<dyn RateLimiter>,
    /// `rate_limit.trusted_proxies`.
    pub proxies: Vec<ipnet::IpNet>,
}

impl RateLimit {
    /// The client's address: the peer, or — when the peer is a trusted proxy — the
    /// right-most `X-Forwarded-For` entry that is not one (entries further left are the
    /// client's own say and could be forged).
    fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = |ip: IpAddr| super::auth::trusted(&self.proxies, ip);
        if !trusted(peer) {
            return peer;
        }
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse::<IpAddr>().ok())
            .collect::<Vec<_>>();
        forwarded.into_iter().rev().find(|ip| !trusted(*ip)).unwrap_or(peer)
    }
}

/// The middleware.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(limits) = &state.rate_limit else { return next.run(request).await };
    if !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    if state.auth.is_merchant(&parts) || state.auth.is_admin(&parts) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let caller = state.auth.caller(&parts);
    let key = match &caller {
        Ok(Caller::Customer(id)) => format!("c:{}", id.as_str()),
        _ => match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
            Some(ConnectInfo(peer)) => format!("ip:{}", limits.client(peer.ip(), &parts.headers)),
            None => "ip:unknown".to_owned(),
        },
    };
    // The handler's extractor reuses it, a refusal included, instead of verifying again.
    parts.extensions.insert(CheckedCaller(caller));
    match limits.limiter.acquire(&key).await {
        Ok(None) => next.run(Request::from_parts(parts, body)).await,
        Ok(Some(wait)) => {
            metrics::counter!("ordermill_rate_limited_total").increment(1);
            rate_limited(wait).into_response()
        }
        Err(error) => {
            metrics::counter!("ordermill_rate_limit_errors_total").increment(1);
            tracing::warn!(error = %error, "The shared rate limit could not be read; letting the request through.");
            next.run(Request::from_parts(parts, body)).await
        }
    }
}

fn rate_limited(wait: Duration) -> ApiError {
    let secs = u32::try_from(wait.as_millis().div_ceil(1000)).unwrap_or(u32::MAX).max(1);
    ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("too many requests from this client; retry in {secs} s"),
    )
    .with_retry_after(secs)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use proptest::prelude::{Just, Strategy};

    use super::*;

    struct Never;

    #[async_trait::async_trait]
    impl RateLimiter for Never {
        async fn acquire(
            &self,
            _: &str,
        ) -> Result<Option<Duration>, ordermill_core::ports::CacheError> {
            Ok(None)
        }
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_hop_and_only_behind_a_trusted_proxy() {
        let limits = RateLimit {
            limiter: Arc::new(Never),
            proxies: vec!["127.0.0.1/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()],
        };
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let with = |xff: &'static str| {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-for", HeaderValue::from_static(xff));
            h
        };
        let forged_then_real = with("6.6.6.6, 203.0.113.7, 10.1.1.1");
        assert_eq!(limits.client(ip("127.0.0.1"), &forged_then_real), ip("203.0.113.7"));
        assert_eq!(limits.client(ip("198.51.100.2"), &forged_then_real), ip("198.51.100.2"));
        assert_eq!(limits.client(ip("127.0.0.1"), &HeaderMap::new()), ip("127.0.0.1"));
        assert_eq!(limits.client(ip("127.0.0.1"), &with("garbage")), ip("127.0.0.1"));
        let mapped = limits.client(ip("::ffff:127.0.0.1"), &forged_then_real);
        assert_eq!(mapped, ip("203.0.113.7"), "nginx on a dual-stack listener is still trusted");
    }

    // Behind a trusted proxy the client's address comes from a header anyone can write: for
    // any header, the answer is the peer or an address the header names, never a trusted one
    // picked from it, and an untrusted peer is always itself.
    proptest::proptest! {
        #[test]
        fn any_forwarded_for_header_yields_the_peer_or_an_untrusted_hop(
            hops in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::arbitrary::any::<std::net::Ipv4Addr>().prop_map(|ip| ip.to_string()),
                    proptest::arbitrary::any::<std::net::Ipv6Addr>().prop_map(|ip| ip.to_string()),
                    Just("10.1.2.3".to_owned()),
                    Just("127.0.0.1".to_owned()),
                    "[ -~]{0,20}",
                ],
                0..8,
            ),
            peer_trusted in proptest::arbitrary::any::<bool>(),
        ) {
            let limits = RateLimit {
                limiter: Arc::new(Never),
                proxies: vec!["127.0.0.1/32".parse().unwrap(), "10.0.0.0/8".parse().unwrap()],
            };
            let peer: IpAddr = if peer_trusted { "127.0.0.1" } else { "198.51.100.9" }.parse().unwrap();
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_str(&hops.join(",")) {
                headers.insert("x-forwarded-for", value);
            }
            let client = limits.client(peer, &headers);
            if !peer_trusted {
                proptest::prop_assert_eq!(client, peer);
            } else if client != peer {
                let trusted = super::super::auth::trusted(&limits.proxies, client);
                proptest::prop_assert!(!trusted, "{client} is a trusted proxy");
                proptest::prop_assert!(hops.iter().any(|h| h.trim().parse::<IpAddr>() == Ok(client)));
            }
        }
    }
}
