//! Request budgets shared by every api node: one GCRA state per key in Redis (its
//! "theoretical arrival time"), read and moved by one script on Redis's own clock, so nodes
//! with skewed clocks still spend one budget.
//!
//! Keys are `PREFIX:rl:KEY` without a hash tag: each is touched alone, so on a cluster they
//! spread over every shard. Each expires once its bucket would be full again.

use std::time::Duration;

use async_trait::async_trait;
use ordermill_core::ports::{CacheError, RateLimiter, RateQuota};
use redis::Script;
use redis::aio::ConnectionManager;

use super::unavailable;

/// ARGV[1]: microseconds per request at the sustained rate; ARGV[2]: the burst. Returns 0
/// when allowed (and spends it), else the microseconds until the next request is allowed.
const ACQUIRE: &str = r#"
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat + emission - burst * emission
if allow_at > now then return allow_at - now end
local new_tat = tat + emission
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
return 0
"#;

/// Budgets in Redis.
pub struct RedisRateLimiter {
    conn: ConnectionManager,
    prefix: String,
    emission_micros: u64,
    burst: u32,
    script: Script,
}

impl RedisRateLimiter {
    pub(super) fn new(conn: ConnectionManager, prefix: String, quota: RateQuota) -> Self {
        let emission_micros =
            u64::try_from(quota.emission_interval().as_micros()).unwrap_or(u64::MAX).max(1);
        RedisRateLimiter {
            conn,
            prefix,
            emission_micros,
            burst: quota.burst.get(),
            script: Script::new(ACQUIRE),
        }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn acquire(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        let wait: u64 = self
            .script
            .key(format!("{}:rl:{key}", self.prefix))
            .arg(self.emission_micros)
            .arg(self.burst)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok((wait > 0).then(|| Duration::from_micros(wait)))
    }
}
