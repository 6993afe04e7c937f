//! The read cache behind `GET /api/orders/{id}`. Consumers put an order in when its status
//! changes (once in its life: to confirmed or cancelled); reads add only final orders. So a
//! cached order is always the newest, and orders still moving are read from the store.

use std::sync::Arc;

use moka::sync::Cache;
use ordermill_core::{Order, OrderId};

/// Orders by id.
#[derive(Clone)]
pub struct OrderCache(Cache<OrderId, Arc<Order>>);

impl OrderCache {
    /// A cache of at most `capacity` orders.
    pub fn new(capacity: u64) -> Self {
        OrderCache(Cache::new(capacity))
    }

    /// A cached order.
    pub fn get(&self, id: &OrderId) -> Option<Arc<Order>> {
        self.0.get(id)
    }

    /// Remembers an order (see the module doc for which ones).
    pub fn insert(&self, order: Arc<Order>) {
        self.0.insert(order.id, order);
    }
}
