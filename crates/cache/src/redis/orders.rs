//! The order read cache in Redis, shared by api nodes and workers: `PREFIX:order:v2:ID` holds
//! an order in the cache's own format (`order_format`, whose version is in the key) with a
//! time to live. No hash tag: these keys are read and written one at
//! a time, so on a cluster they spread over every shard instead of sharing the stock's slot.

use std::time::Duration;

use async_trait::async_trait;
use ordermill_core::ports::{CacheError, OrderReadCache};
use ordermill_core::{Order, OrderId};
use redis::aio::ConnectionManager;

use super::unavailable;
use crate::order_format;

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
        format!("{}:order:{}:{order_id}", self.prefix, order_format::VERSION)
    }
}

#[async_trait]
impl OrderReadCache for RedisOrderCache {
    async fn get(&self, order_id: &OrderId) -> Result<Option<Order>, CacheError> {
        let cached: Option<String> = redis::cmd("GET")
            .arg(self.key(order_id))
            .query_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        cached.map(|text| order_format::decode(*order_id, &text)).transpose()
    }

    async fn put(&self, order: &Order) -> Result<(), CacheError> {
        self.put_many(std::slice::from_ref(order)).await
    }

    /// One pipeline for the lot: a batch's SETs sent one after another cost Redis a read and
    /// a reply per order.
    async fn put_many(&self, orders: &[Order]) -> Result<(), CacheError> {
        if orders.is_empty() {
            return Ok(());
        }
        let ttl = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let mut pipe = redis::pipe();
        for order in orders {
            pipe.cmd("SET")
                .arg(self.key(&order.id))
                .arg(order_format::encode(order))
                .arg("PX")
                .arg(ttl)
                .ignore();
        }
        pipe.query_async::<()>(&mut self.conn.clone()).await.map_err(unavailable)
    }
}
