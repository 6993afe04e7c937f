//! Request budgets in this process, with governor's keyed GCRA limiter.

use std::time::Duration;

use async_trait::async_trait;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use ordermill_core::ports::{CacheError, RateLimiter, RateQuota};

/// Budgets per key in memory. Keys whose bucket is full again are dropped by
/// [`LocalRateLimiter::forget_idle`], so memory follows the clients seen recently.
pub struct LocalRateLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
}

impl LocalRateLimiter {
    /// A limiter with `quota` per key.
    pub fn new(quota: RateQuota) -> Self {
        let quota = Quota::per_second(quota.per_second).allow_burst(quota.burst);
        LocalRateLimiter { limiter: DefaultKeyedRateLimiter::dashmap(quota) }
    }

    /// Drops keys that are back to a full bucket (they would start there anyway).
    pub fn forget_idle(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.limiter.len()
    }

    /// No key held.
    pub fn is_empty(&self) -> bool {
        self.limiter.is_empty()
    }
}

#[async_trait]
impl RateLimiter for LocalRateLimiter {
    async fn acquire(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        match self.limiter.check_key(&key.to_owned()) {
            Ok(()) => Ok(None),
            Err(not_until) => Ok(Some(not_until.wait_time_from(DefaultClock::default().now()))),
        }
    }
}
