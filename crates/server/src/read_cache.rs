//! The read cache behind `GET /api/orders/{id}`, holding each order's JSON view. Consumers put
//! an order in when its status changes (once in its life: to confirmed or cancelled); reads add
//! only final orders. So a cached view is always the newest, and orders still moving are read
//! from the store. In process on the embedded engines; in Redis when api nodes and workers
//! share it, so a view a worker writes is what every api node answers.

use std::sync::Arc;

use ordermill_core::ports::OrderReadCache;
use ordermill_core::{Order, OrderId};

use crate::http::orders::OrderView;

/// Order views by id.
#[derive(Clone)]
pub struct OrderCache(Arc<dyn OrderReadCache>);

impl OrderCache {
    /// Over a backend (`ordermill_cache::LocalOrderCache` or `RedisOrderCache`).
    pub fn new(backend: Arc<dyn OrderReadCache>) -> Self {
        OrderCache(backend)
    }

    /// A cached view; `None` on a miss or when the cache cannot be read (the store answers).
    pub async fn get(&self, id: &OrderId) -> Option<Arc<str>> {
        match self.0.get(id).await {
            Ok(view) => view,
            Err(error) => {
                tracing::warn!(order_id = %id, error = %error, "Order read cache unavailable; reading the store.");
                None
            }
        }
    }

    /// Remembers an order's view (see the module doc for which ones); a cache that cannot be
    /// written only costs the next read a trip to the store.
    pub async fn insert(&self, order: &Order) {
        let view = serde_json::to_string(&OrderView::from(order))
            .expect("serializing an order view of strings and integers cannot fail");
        if let Err(error) = self.0.put(&order.id, Arc::from(view)).await {
            tracing::warn!(order_id = %order.id, error = %error, "Could not write the order read cache.");
        }
    }
}
