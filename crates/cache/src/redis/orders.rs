//! The order read cache in Redis, shared by api nodes and workers: `PREFIX:order:ID` holds an
//! order's JSON view with a time to live. No hash tag: these keys are read and written one at
//! a time, so on a cluster they spread over every shard instead of sharing the stock's slot.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ordermill_core::OrderId;
use ordermill_core::ports::{CacheError, OrderReadCache};
use redis::aio::ConnectionManager;

use super::unavailable;

/// Order views in Redis.
#[derive(Clone)]
pub struct RedisOrderCache {
    pub(super) conn: ConnectionManager,
    pub(super) prefix: String,
    pub(super) ttl: Duration,
}

impl std::fmt::Debug for RedisOrderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisOrderCache").field("prefix", &self.prefix).finish_non_exhaustive()
    }
}

impl RedisOrderCache {
    fn key(&self, order_id: &OrderId) -> String {
        format!("{}:order:{order_id}", self.prefix)
    }
}

#[async_trait]
impl OrderReadCache for RedisOrderCache {
    async fn get(&self, order_id: &OrderId) -> Result<Option<Arc<str>>, CacheError> {
        let view: Option<String> = redis::cmd("GET")
            .arg(self.key(order_id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(view.map(Arc::from))
    }

    async fn put(&self, order_id: &OrderId, view: Arc<str>) -> Result<(), CacheError> {
        let ttl = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        redis::cmd("SET")
            .arg(self.key(order_id))
            .arg(&*view)
            .arg("PX")
            .arg(ttl)
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(unavailable)
    }
}
