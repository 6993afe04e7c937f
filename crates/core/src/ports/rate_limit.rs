//! Per-client request budgets: a token bucket (GCRA) per key, local to a node or shared by
//! every node through the cache.

use std::num::NonZeroU32;
use std::time::Duration;

use async_trait::async_trait;

use super::cache::CacheError;

/// A budget: `per_second` requests on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuota {
    /// Sustained requests per second.
    pub per_second: NonZeroU32,
    /// Requests allowed back to back after a quiet spell.
    pub burst: NonZeroU32,
}

impl RateQuota {
    /// Time between two requests at the sustained rate.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_secs(1) / self.per_second.get()
    }
}

/// Spends a request from a key's budget.
#[async_trait]
pub trait RateLimiter: Send + Sync + 'static {
    /// `None` when the request may go on; `Some(wait)` when the budget is spent and the next
    /// request would be allowed after `wait`.
    ///
    /// # Errors
    /// [`CacheError::Unavailable`] when a shared budget cannot be read.
    async fn acquire(&self, key: &str) -> Result<Option<Duration>, CacheError>;
}
