//! Hot stock in Redis, shared by every node: one string key per SKU holding the units
//! available to sell, changed only by Lua scripts so a reservation of several SKUs is one
//! atomic step (all or none, never negative) whatever the concurrency across nodes.
//!
//! Keys are `{PREFIX}:stock:SKU`. The braces make `PREFIX` the Redis Cluster hash tag, so all
//! stock keys live in one slot and a multi-SKU script is legal on a cluster.
//!
//! A lost count must not read as "sold out": `{PREFIX}:epoch` is written with every full set
//! of counts (a start's reset, a rebuild), and every script that reads or moves a count checks
//! it first. A Redis that restarts without its data, or is flushed, loses the epoch with the
//! counts, so reservations answer `Lost` (503 at intake) until one node, holding the
//! `{PREFIX}:rebuild` claim, has set every count again from the store.
//!
//! Counts that come back with their server are not believed either: a Redis restarted from an
//! RDB/AOF file may miss the last writes, and a promoted replica may lag its primary. Every full
//! set of counts also notes the `run_id` of the server it was made on (`{PREFIX}:server`), a
//! name Redis picks anew at each start; counts found under another `run_id` are marked lost
//! and rebuilt like gone ones. The price is that
//! one shard serves all hot stock; a deployment that outgrows it shards by prefix (one prefix
//! per catalog partition), which this layout allows without a script change.

mod merge;
mod orders;
mod rate_limit;
mod reserve;

use std::time::Duration;

use async_trait::async_trait;
use ordermill_core::ports::{CacheError, Epoch, StockCache};
use ordermill_core::{OrderLine, Sku};
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Gives units back, all lines at once; nothing (-1) when the counts were lost, since the
/// rebuild counts them from the store.
const RELEASE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
for i = 2, #KEYS do redis.call('INCRBY', KEYS[i], ARGV[i - 1]) end
return 0
"#;

/// Adds ARGV[1] (may be negative) to KEYS[2] unless the result would be negative. Returns
/// {1, new}, {0, current}, or {-1, 0} when the counts (epoch KEYS[1]) were lost.
const ADJUST: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
local have = tonumber(redis.call('GET', KEYS[2]) or '0')
local new = have + tonumber(ARGV[1])
if new < 0 then return {0, have} end
redis.call('SET', KEYS[2], new)
return {1, new}
"#;

/// Sets KEYS[2] to ARGV[1] if it has no count and the counts (epoch KEYS[1]) are whole; a
/// lost cache gets every count at once from the rebuild instead. Returns 1 when it set.
const SET_IF_ABSENT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
if redis.call('SET', KEYS[2], ARGV[1], 'NX') then return 1 end
return 0
"#;

/// Lua that sets the epoch (`KEYS[e]`) anew: larger than the one it replaces and, since a loss
/// takes that one with it, larger than any before it too — Redis's clock in microseconds,
/// which moves on between any two full sets of counts (Lua's numbers hold it exactly up to
/// 2^53 µs). Reservations carry the epoch they were taken under; see
/// [`ordermill_core::ports::Epoch`].
macro_rules! new_epoch {
    ($e:literal) => {
        concat!(
            "local t = redis.call('TIME')\n",
            "local us = tonumber(t[1]) * 1000000 + tonumber(t[2])\n",
            "local was = tonumber(redis.call('GET', KEYS[",
            $e,
            "]) or '0')\n",
            "redis.call('SET', KEYS[",
            $e,
            "], string.format('%.0f', math.max(us, was + 1)))\n"
        )
    };
}

/// KEYS[1] the epoch, KEYS[2] the rebuild claim, KEYS[3] the server note, KEYS[4..] the
/// counts; ARGV[1] the owner ('' = unconditional), ARGV[2] the server's run_id, ARGV[3..] the
/// counts. Sets every count, the note and a new epoch, only while the owner holds the claim
/// (which it gives up). Returns 1 when it rebuilt.
const REBUILD: &str = concat!(
    r#"
if ARGV[1] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
for i = 4, #KEYS do redis.call('SET', KEYS[i], ARGV[i - 1]) end
redis.call('SET', KEYS[3], ARGV[2])
"#,
    new_epoch!("1"),
    r#"
if ARGV[1] ~= '' then redis.call('DEL', KEYS[2]) end
return 1
"#
);

/// KEYS[1] the epoch; ARGV[1] the epoch some orders were reserved under. Deletes the epoch
/// (the counts are lost, to be rebuilt from the store) if it is newer. Returns the epoch found,
/// or nil when the counts were lost already.
const SUPERSEDED: &str = r#"
local found = redis.call('GET', KEYS[1])
if not found then return nil end
if tonumber(found) > tonumber(ARGV[1]) then redis.call('DEL', KEYS[1]) end
return tonumber(found)
"#;

/// A node joins: KEYS[1] is the live-node sorted set (score = expiry, ms), KEYS[2] the epoch,
/// KEYS[3] the server note, KEYS[4..] the stock keys; ARGV[1] the node, ARGV[2] its ttl (ms),
/// ARGV[3] the server's run_id, ARGV[4..] the counts.
/// Drops expired nodes; with none left, or the counts lost, sets every count and a new epoch,
/// else only missing ones — and if it dropped a node that died with reservations in flight,
/// marks the counts lost so they are rebuilt from the store (see HEARTBEAT). Then adds the
/// node. Returns 1 when it reset. One script, so it is atomic against other nodes'
/// reservations and joins.
const JOIN: &str = concat!(
    r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREM', KEYS[1], ARGV[1])
local reset = redis.call('ZCARD', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0
for i = 4, #KEYS do
  if reset then redis.call('SET', KEYS[i], ARGV[i])
  else redis.call('SET', KEYS[i], ARGV[i], 'NX') end
end
if reset then
  redis.call('SET', KEYS[3], ARGV[3])
"#,
    new_epoch!("2"),
    r#"
elseif expired > 0 then redis.call('DEL', KEYS[2]) end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if reset then return 1 else return 0 end
"#
);

/// Renews a node: KEYS[1] the live-node set, KEYS[2] the epoch; ARGV[1] the node, ARGV[2] its
/// ttl (ms). Redis's clock, so nodes with skewed clocks agree on who is live. A node whose
/// lease ran out died (or was cut off) with reservations that may never commit: its entry is
/// dropped and the counts marked lost, so the nodes stop selling for the moment and one
/// rebuilds every count from the store, which frees those units. Returns how many it dropped.
const HEARTBEAT: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expired = redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if expired > 0 then redis.call('DEL', KEYS[2]) end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
return expired
"#;

/// A Redis-backed [`StockCache`].
#[derive(Clone)]
pub struct RedisStockCache {
    conn: ConnectionManager,
    prefix: String,
    reserver: merge::Merger<reserve::Reserve>,
    release: Script,
    adjust: Script,
    set_if_absent: Script,
    rebuild: Script,
    join: Script,
    heartbeat: Script,
    superseded: Script,
}

impl std::fmt::Debug for RedisStockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStockCache").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

pub use self::merge::MERGED_CALL_ITEMS;
pub use self::orders::RedisOrderCache;
pub use self::rate_limit::RedisRateLimiter;

fn stock_key(prefix: &str, sku: &Sku) -> String {
    format!("{{{prefix}}}:stock:{}", sku.as_str())
}

fn epoch_key(prefix: &str) -> String {
    format!("{{{prefix}}}:epoch")
}

fn unavailable(error: redis::RedisError) -> CacheError {
    CacheError::Unavailable(error.to_string())
}

impl RedisStockCache {
    /// Connects to `url` (`redis://host:port/db`, or `rediss://` for TLS verified against the
    /// system's certificate authorities); keys start with `{prefix}:`. The connection manager
    /// reconnects by itself after a Redis restart.
    ///
    /// # Errors
    /// [`CacheError::Unavailable`] when Redis cannot be reached within 5 s.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, CacheError> {
        Self::connect_with(url, prefix, None).await
    }

    /// [`RedisStockCache::connect`], a `rediss://` server's certificate verified against the
    /// certificate authorities in `root_pem` (PEM) instead of the system's when given.
    ///
    /// # Errors
    /// [`CacheError::Unavailable`] when Redis cannot be reached within 5 s, or the TLS
    /// handshake fails.
    pub async fn connect_with(
        url: &str,
        prefix: &str,
        root_pem: Option<Vec<u8>>,
    ) -> Result<Self, CacheError> {
        let client = match root_pem {
            Some(root) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates { client_tls: None, root_cert: Some(root) },
            ),
            None => redis::Client::open(url),
        }
        .map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(3);
        let conn = ConnectionManager::new_with_config(client, config).await.map_err(unavailable)?;
        Ok(RedisStockCache {
            reserver: merge::Merger::start(conn.clone(), reserve::Reserve::new(prefix)),
            conn,
            prefix: prefix.to_owned(),
            release: Script::new(RELEASE),
            adjust: Script::new(ADJUST),
            set_if_absent: Script::new(SET_IF_ABSENT),
            rebuild: Script::new(REBUILD),
            join: Script::new(JOIN),
            heartbeat: Script::new(HEARTBEAT),
            superseded: Script::new(SUPERSEDED),
        })
    }

    /// The live api nodes, in the stock keys' hash slot (a join touches both atomically).
    /// The order read cache on the same connection, each view kept for `ttl`.
    pub fn order_cache(&self, ttl: Duration) -> RedisOrderCache {
        RedisOrderCache { conn: self.conn.clone(), prefix: self.prefix.clone(), ttl }
    }

    /// Request budgets shared through the same Redis, each key's kept under `PREFIX:rl:`.
    pub fn rate_limiter(&self, quota: ordermill_core::ports::RateQuota) -> RedisRateLimiter {
        RedisRateLimiter::new(self.conn.clone(), self.prefix.clone(), quota)
    }

    fn nodes_key(&self) -> String {
        format!("{{{}}}:nodes", self.prefix)
    }

    fn key(&self, sku: &Sku) -> String {
        stock_key(&self.prefix, sku)
    }

    fn epoch_key(&self) -> String {
        epoch_key(&self.prefix)
    }

    fn claim_key(&self) -> String {
        format!("{{{}}}:rebuild", self.prefix)
    }

    /// The `run_id` of the server the counts were last set on.
    fn server_key(&self) -> String {
        format!("{{{}}}:server", self.prefix)
    }

    /// The name Redis picked for itself when it started (`INFO server`): another after a
    /// restart, and another on a promoted replica.
    async fn run_id(&self) -> Result<String, CacheError> {
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        info.lines()
            .find_map(|line| line.strip_prefix("run_id:"))
            .map(|id| id.trim().to_owned())
            .ok_or_else(|| CacheError::Unavailable("Redis's INFO server has no run_id".into()))
    }

    async fn run_lines(&self, script: &Script, lines: &[OrderLine]) -> Result<i64, CacheError> {
        let mut invocation = script.prepare_invoke();
        invocation.key(self.epoch_key());
        for line in lines {
            invocation.key(self.key(&line.sku)).arg(line.quantity.get());
        }
        invocation.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)
    }
}

#[async_trait]
impl StockCache for RedisStockCache {
    async fn reserve(&self, lines: &[OrderLine]) -> Result<Epoch, CacheError> {
        self.reserver.call(lines.to_vec()).await
    }

    async fn reserve_each(&self, orders: &[&[OrderLine]]) -> Vec<Result<Epoch, CacheError>> {
        self.reserver.call_each(orders.iter().map(|lines| lines.to_vec()).collect()).await
    }

    async fn recount_if_superseded(
        &self,
        reserved_under: Epoch,
    ) -> Result<Option<Epoch>, CacheError> {
        let found: Option<u64> = self
            .superseded
            .key(self.epoch_key())
            .arg(reserved_under.get())
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(found.map(Epoch::new))
    }

    async fn mark_lost(&self) -> Result<(), CacheError> {
        // Without the epoch every script answers "lost" and the watchdogs rebuild the counts.
        redis::cmd("DEL")
            .arg(self.epoch_key())
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }

    async fn release(&self, lines: &[OrderLine]) -> Result<(), CacheError> {
        // -1 (lost) is fine: the rebuild reads these units back from the store.
        self.run_lines(&self.release, lines).await.map(drop)
    }

    async fn adjust(&self, sku: &Sku, delta: i64) -> Result<i64, CacheError> {
        let (done, value): (i64, i64) = self
            .adjust
            .key(self.epoch_key())
            .key(self.key(sku))
            .arg(delta)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        match done {
            1 => Ok(value),
            -1 => Err(CacheError::Lost),
            _ => Err(CacheError::Insufficient {
                sku: sku.clone(),
                requested: delta,
                available: value,
            }),
        }
    }

    async fn set_available_if_absent(&self, sku: &Sku, available: i64) -> Result<bool, CacheError> {
        // One script: two nodes starting together cannot both overwrite a count a third one is
        // already reserving from, and a lost cache is left to the rebuild.
        let set: i64 = self
            .set_if_absent
            .key(self.epoch_key())
            .key(self.key(sku))
            .arg(available)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(set == 1)
    }

    async fn is_whole(&self) -> Result<bool, CacheError> {
        let (epoch, noted): (i64, Option<String>) = redis::pipe()
            .cmd("EXISTS")
            .arg(self.epoch_key())
            .cmd("GET")
            .arg(self.server_key())
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        if epoch == 0 {
            return Ok(false);
        }
        let run_id = self.run_id().await?;
        match noted {
            Some(noted) if noted == run_id => Ok(true),
            // Counts set by a build that noted no server: taken as they are, as before.
            None => {
                redis::cmd("SET")
                    .arg(self.server_key())
                    .arg(&run_id)
                    .arg("NX")
                    .query_async::<Option<String>>(&mut self.conn.clone())
                    .await
                    .map_err(unavailable)?;
                Ok(true)
            }
            // Counts that outlived the server that kept them (restored from a file, or
            // replicated to a replica now promoted) may be missing the last reservations:
            // not sold from until rebuilt from the store.
            Some(_) => {
                self.mark_lost().await?;
                Ok(false)
            }
        }
    }

    async fn claim_rebuild(&self, node: &str, lease: Duration) -> Result<bool, CacheError> {
        let claimed: Option<String> = redis::cmd("SET")
            .arg(self.claim_key())
            .arg(node)
            .arg("NX")
            .arg("PX")
            .arg(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(claimed.is_some())
    }

    async fn rebuild(
        &self,
        owner: Option<&str>,
        counts: &[(Sku, i64)],
    ) -> Result<bool, CacheError> {
        let run_id = self.run_id().await?;
        let mut invocation = self.rebuild.prepare_invoke();
        invocation.key(self.epoch_key()).key(self.claim_key()).key(self.server_key());
        invocation.arg(owner.unwrap_or("")).arg(run_id);
        for (sku, available) in counts {
            invocation.key(self.key(sku)).arg(*available);
        }
        let rebuilt: i64 =
            invocation.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        Ok(rebuilt == 1)
    }

    async fn join_shared(
        &self,
        node: &str,
        counts: &[(Sku, i64)],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let run_id = self.run_id().await?;
        let mut invocation = self.join.prepare_invoke();
        invocation.key(self.nodes_key()).key(self.epoch_key()).key(self.server_key());
        invocation.arg(node).arg(ttl.as_millis() as u64).arg(run_id);
        for (sku, available) in counts {
            invocation.key(self.key(sku)).arg(*available);
        }
        let reset: i64 =
            invocation.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        Ok(reset == 1)
    }

    async fn heartbeat(&self, node: &str, ttl: Duration) -> Result<u64, CacheError> {
        let mut invocation = self.heartbeat.prepare_invoke();
        invocation.key(self.nodes_key()).key(self.epoch_key());
        invocation.arg(node).arg(ttl.as_millis() as u64);
        let expired: i64 =
            invocation.invoke_async(&mut self.conn.clone()).await.map_err(unavailable)?;
        Ok(u64::try_from(expired).unwrap_or(0))
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
