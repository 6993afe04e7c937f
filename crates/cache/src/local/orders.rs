//! The order read cache in process (moka): bounded in entries, each kept for a time to live.
//! Orders stay domain values here; nothing outlives the process, so there is no format.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use moka::sync::Cache;
use ordermill_core::ports::{CacheError, OrderReadCache};
use ordermill_core::{Order, OrderId};

/// Order views in this process.
#[derive(Clone)]
pub struct LocalOrderCache(Cache<OrderId, Arc<Order>>);

impl std::fmt::Debug for LocalOrderCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalOrderCache").field("entries", &self.0.entry_count()).finish()
    }
}

impl LocalOrderCache {
    /// At most `capacity` orders, each kept for `ttl`.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        LocalOrderCache(Cache::builder().max_capacity(capacity).time_to_live(ttl).build())
    }
}

#[async_trait]
impl OrderReadCache for LocalOrderCache {
    async fn get(&self, order_id: &OrderId) -> Result<Option<Order>, CacheError> {
        Ok(self.0.get(order_id).map(|order| Order::clone(&order)))
    }

    async fn put(&self, order: &Order) -> Result<(), CacheError> {
        self.0.insert(order.id, Arc::new(order.clone()));
        Ok(())
    }
}
