//! The read cache behind `GET /api/orders/{id}`. Consumers put an order in when it becomes
//! final (once in its life: confirmed or cancelled; again if a late payment notes a refund on
//! a cancelled one); reads add only final orders. So a cached order is always the newest, and
//! orders still moving are read from the store. In
//! process on the embedded engines; in Redis when api nodes and workers share it, so an order
//! a worker confirms is what every api node answers. The backend keeps orders in its own
//! versioned format; what the HTTP layer shows is its own view of the order.

use std::sync::Arc;

use ordermill_core::ports::OrderReadCache;
use ordermill_core::{Order, OrderId};

/// Orders by id, over a backend whose failures only cost a trip to the store.
#[derive(Clone)]
pub struct OrderCache(Arc<dyn OrderReadCache>);

impl OrderCache {
    /// Over a backend (`ordermill_cache::LocalOrderCache` or `RedisOrderCache`).
    pub fn new(backend: Arc<dyn OrderReadCache>) -> Self {
        OrderCache(backend)
    }

    /// A cached order; `None` on a miss or when the cache cannot be read (the store answers).
    pub async fn get(&self, id: &OrderId) -> Option<Order> {
        match self.0.get(id).await {
            Ok(order) => order,
            Err(error) => {
                tracing::warn!(order_id = %id, error = %error, "Order read cache unavailable; reading the store.");
                None
            }
        }
    }

    /// Remembers an order (see the module doc for which ones); a cache that cannot be written
    /// only costs the next read a trip to the store.
    pub async fn insert(&self, order: &Order) {
        if let Err(error) = self.0.put(order).await {
            tracing::warn!(order_id = %order.id, error = %error, "Could not write the order read cache.");
        }
    }

    /// Remembers several orders at once (one round trip to a shared cache), like [`insert`].
    ///
    /// [`insert`]: OrderCache::insert
    pub async fn insert_all(&self, orders: &[Order]) {
        if let Err(error) = self.0.put_many(orders).await {
            tracing::warn!(orders = orders.len(), error = %error, "Could not write the order read cache.");
        }
    }
}
