//! Hot stock in Redis, shared by every node: one string key per SKU holding the units
//! available to sell, changed only by Lua scripts so a reservation of several SKUs is one
//! atomic step (all or none, never negative) whatever the concurrency across nodes.
//!
//! Keys are `{PREFIX}:stock:SKU`. The braces make `PREFIX` the Redis Cluster hash tag, so all
//! stock keys live in one slot and a multi-SKU script is legal on a cluster. The price is that
//! one shard serves all hot stock; a deployment that outgrows it shards by prefix (one prefix
//! per catalog partition), which this layout allows without a script change.

mod orders;

use std::time::Duration;

use async_trait::async_trait;
use ordermill_core::ports::{CacheError, StockCache};
use ordermill_core::{OrderLine, Sku};
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Takes every line's units or none. Returns 0, or the 1-based index of the first line short
/// (a missing key is an unknown SKU: short).
const RESERVE: &str = r#"
for i, key in ipairs(KEYS) do
  local have = redis.call('GET', key)
  if not have or tonumber(have) < tonumber(ARGV[i]) then return i end
end
for i, key in ipairs(KEYS) do redis.call('DECRBY', key, ARGV[i]) end
return 0
"#;

/// Gives units back, all lines at once.
const RELEASE: &str = r#"
for i, key in ipairs(KEYS) do redis.call('INCRBY', key, ARGV[i]) end
return 0
"#;

/// Adds ARGV[1] (may be negative) unless the result would be negative. Returns
/// {1, new} or {0, current}.
const ADJUST: &str = r#"
local have = tonumber(redis.call('GET', KEYS[1]) or '0')
local new = have + tonumber(ARGV[1])
if new < 0 then return {0, have} end
redis.call('SET', KEYS[1], new)
return {1, new}
"#;

/// A node joins: KEYS[1] is the live-node sorted set (score = expiry, ms), KEYS[2..] the stock
/// keys; ARGV[1] the node, ARGV[2] its ttl (ms), ARGV[3..] the counts. Drops expired nodes;
/// with none left, sets every count, else only missing ones; then adds the node. Returns 1
/// when it reset. One script, so it is atomic against other nodes' reservations and joins.
const JOIN: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREM', KEYS[1], ARGV[1])
local alone = redis.call('ZCARD', KEYS[1]) == 0
for i = 2, #KEYS do
  if alone then redis.call('SET', KEYS[i], ARGV[i + 1])
  else redis.call('SET', KEYS[i], ARGV[i + 1], 'NX') end
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if alone then return 1 else return 0 end
"#;

/// Renews a node: KEYS[1] the live-node set, ARGV[1] the node, ARGV[2] its ttl (ms). Redis's
/// clock, so nodes with skewed clocks agree on who is live.
const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return 0
"#;

/// A Redis-backed [`StockCache`].
#[derive(Clone)]
pub struct RedisStockCache {
    conn: ConnectionManager,
    prefix: String,
    reserve: Script,
    release: Script,
    adjust: Script,
    join: Script,
    heartbeat: Script,
}

impl std::fmt::Debug for RedisStockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStockCache").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

pub use self::orders::RedisOrderCache;

fn unavailable(error: redis::RedisError) -> CacheError {
    CacheError::Unavailable(error.to_string())
}

impl RedisStockCache {
    /// Connects to `url` (`redis://host:port/db`); keys start with `{prefix}:`. The
    /// connection manager reconnects by itself after a Redis restart.
    ///
    /// # Errors
    /// [`CacheError::Unavailable`] when Redis cannot be reached within 5 s.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, CacheError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_with_config(client, config).await.map_err(unavailable)?;
        Ok(RedisStockCache {
            conn,
            prefix: prefix.to_owned(),
            reserve: Script::new(RESERVE),
            release: Script::new(RELEASE),
            adjust: Script::new(ADJUST),
            join: Script::new(JOIN),
            heartbeat: Script::new(HEARTBEAT),
        })
    }

    /// The live api nodes, in the stock keys' hash slot (a join touches both atomically).
    /// The order read cache on the same connection, each view kept for `ttl`.
    pub fn order_cache(&self, ttl: Duration) -> RedisOrderCache {
        RedisOrderCache { conn: self.conn.clone(), prefix: self.prefix.clone(), ttl }
    }

    fn nodes_key(&self) -> String {
        format!("{{{}}}:nodes", self.prefix)
    }

    fn key(&self, sku: &Sku) -> String {
        format!("{{{}}}:stock:{}", self.prefix, sku.as_str())
    }

    async fn run_lines(&self, script: &Script, lines: &[OrderLine]) -> Result<i64, CacheError> {
        let mut invocation = script.prepare_invoke();
        for line in lines {
            invocation.key(self.key(&line.sku)).arg(line.quantity.get());
        }
        invocation.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)
    }
}

#[async_trait]
impl StockCache for RedisStockCache {
    async fn reserve(&self, lines: &[OrderLine]) -> Result<(), CacheError> {
        match self.run_lines(&self.reserve, lines).await? {
            0 => Ok(()),
            short => {
                let line = usize::try_from(short - 1).ok().and_then(|i| lines.get(i));
                match line {
                    Some(line) => Err(CacheError::OutOfStock { sku: line.sku.clone() }),
                    None => {
                        Err(CacheError::Unavailable(format!("reserve script answered {short}")))
                    }
                }
            }
        }
    }

    async fn release(&self, lines: &[OrderLine]) -> Result<(), CacheError> {
        self.run_lines(&self.release, lines).await.map(drop)
    }

    async fn adjust(&self, sku: &Sku, delta: i64) -> Result<i64, CacheError> {
        let (done, value): (i64, i64) = self
            .adjust
            .key(self.key(sku))
            .arg(delta)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        if done == 1 {
            Ok(value)
        } else {
            Err(CacheError::Insufficient { sku: sku.clone(), requested: delta, available: value })
        }
    }

    async fn set_available(&self, sku: &Sku, available: i64) -> Result<(), CacheError> {
        redis::cmd("SET")
            .arg(self.key(sku))
            .arg(available)
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    async fn set_available_if_absent(&self, sku: &Sku, available: i64) -> Result<bool, CacheError> {
        // SET NX: one atomic step, so two nodes starting together cannot both overwrite a
        // count a third one is already reserving from.
        let set: Option<String> = redis::cmd("SET")
            .arg(self.key(sku))
            .arg(available)
            .arg("NX")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(set.is_some())
    }

    async fn join_shared(
        &self,
        node: &str,
        counts: &[(Sku, i64)],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let mut invocation = self.join.prepare_invoke();
        invocation.key(self.nodes_key()).arg(node).arg(ttl.as_millis() as u64);
        for (sku, available) in counts {
            invocation.key(self.key(sku)).arg(*available);
        }
        let reset: i64 =
            invocation.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        Ok(reset == 1)
    }

    async fn heartbeat(&self, node: &str, ttl: Duration) -> Result<(), CacheError> {
        let mut invocation = self.heartbeat.prepare_invoke();
        invocation.key(self.nodes_key()).arg(node).arg(ttl.as_millis() as u64);
        invocation.invoke_async::<i64>(&mut self.conn.clone()).await.map_err(unavailable)?;
        Ok(())
    }

    async fn leave(&self, node: &str) -> Result<(), CacheError> {
        redis::cmd("ZREM")
            .arg(self.nodes_key())
            .arg(node)
            .query_async::<i64>(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn available(&self, sku: &Sku) -> Result<Option<i64>, CacheError> {
        redis::cmd("GET")
            .arg(self.key(sku))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }
}
