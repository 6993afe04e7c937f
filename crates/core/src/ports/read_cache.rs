//! The read cache behind `GET /api/orders/{id}`: an order's JSON view by id, for a while.
//! In-process on one node; in Redis when api nodes and workers must share it (a worker that
//! confirms an order puts the new view where every api node reads).

use std::sync::Arc;

use async_trait::async_trait;

use crate::order_id::OrderId;
use crate::ports::cache::CacheError;

/// Orders' JSON views by id, each kept for the cache's time to live.
#[async_trait]
pub trait OrderReadCache: Send + Sync + 'static {
    /// The cached view of an order, if any.
    ///
    /// # Errors
    /// On a backend failure (the caller reads the store instead).
    async fn get(&self, order_id: &OrderId) -> Result<Option<Arc<str>>, CacheError>;

    /// Caches an order's view, replacing any older one.
    ///
    /// # Errors
    /// On a backend failure (the next read goes to the store).
    async fn put(&self, order_id: &OrderId, view: Arc<str>) -> Result<(), CacheError>;
}
