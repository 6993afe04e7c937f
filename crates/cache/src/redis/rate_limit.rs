//! Request budgets shared by every api node: one GCRA state per key in Redis (its
//! "theoretical arrival time"), read and moved by one script on Redis's own clock, so nodes
//! with skewed clocks still spend one budget. A node's concurrent requests are merged into one
//! script call ([`super::merge`]), which spends their budgets in queue order: two requests of
//! one client in the same call see each other, as two calls would.
//!
//! Keys are `PREFIX:rl:KEY`, each expiring once its bucket would be full again. They carry no
//! hash tag, and a merged call touches many: one Redis server (the only kind ordermill's client
//! connects to) serves that in one script; a Redis Cluster client would have to split each call
//! by slot.

use std::time::Duration;

use async_trait::async_trait;
use ordermill_core::ports::{CacheError, RateLimiter, RateQuota};
use redis::aio::ConnectionManager;
use redis::{Script, ScriptInvocation};

use super::merge::{MergedCall, Merger};

/// ARGV[1]: microseconds per request at the sustained rate; ARGV[2]: the burst. One entry per
/// key, in order: 0 when allowed (and spent), else the microseconds until its next request is
/// allowed. A key named twice is spent twice, the second seeing the first.
const ACQUIRE_MANY: &str = r#"
local emission = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
for i, key in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local allow_at = tat + emission - burst * emission
  if allow_at > now then
    out[i] = allow_at - now
  else
    local new_tat = tat + emission
    redis.call('SET', key, new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1)
    out[i] = 0
  end
end
return out
"#;

/// Budgets in Redis.
pub struct RedisRateLimiter {
    merger: Merger<Acquire>,
}

impl RedisRateLimiter {
    pub(super) fn new(conn: ConnectionManager, prefix: String, quota: RateQuota) -> Self {
        let emission_micros =
            u64::try_from(quota.emission_interval().as_micros()).unwrap_or(u64::MAX).max(1);
        let acquire = Acquire {
            script: Script::new(ACQUIRE_MANY),
            prefix,
            emission_micros,
            burst: quota.burst.get(),
        };
        RedisRateLimiter { merger: Merger::start(conn, acquire) }
    }
}

#[async_trait]
impl RateLimiter for RedisRateLimiter {
    async fn acquire(&self, key: &str) -> Result<Option<Duration>, CacheError> {
        self.merger.call(key.to_owned()).await
    }
}

/// The merged budget call for one quota.
struct Acquire {
    script: Script,
    prefix: String,
    emission_micros: u64,
    burst: u32,
}

impl MergedCall for Acquire {
    type Item = String;
    type Answer = Option<Duration>;
    const WHAT: &'static str = "rate_limit";

    fn invocation(&self, keys: &[String]) -> ScriptInvocation<'_> {
        let mut invocation = self.script.prepare_invoke();
        for key in keys {
            invocation.key(format!("{}:rl:{key}", self.prefix));
        }
        invocation.arg(self.emission_micros).arg(self.burst);
        invocation
    }

    fn answers(
        &self,
        _keys: &[String],
        waits: Vec<i64>,
    ) -> Result<Vec<Result<Option<Duration>, CacheError>>, CacheError> {
        Ok(waits
            .into_iter()
            .map(|wait| Ok(u64::try_from(wait).ok().filter(|&w| w > 0).map(Duration::from_micros)))
            .collect())
    }
}
