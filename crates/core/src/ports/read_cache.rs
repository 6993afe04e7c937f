//! The read cache behind `GET /api/orders/{id}`: orders by id, for a while. In-process on one
//! node; in Redis when api nodes and workers must share it (a worker that confirms an order
//! puts it where every api node reads). How an order is kept there is the backend's own
//! versioned format, never an HTTP view: the HTTP layer maps the order to its view.

use async_trait::async_trait;

use crate::order::Order;
use crate::order_id::OrderId;
use crate::ports::cache::CacheError;

/// Orders by id, each kept for the cache's time to live.
#[async_trait]
pub trait OrderReadCache: Send + Sync + 'static {
    /// The cached order, if any.
    ///
    /// # Errors
    /// On a backend failure or an entry that does not parse (the caller reads the store).
    async fn get(&self, order_id: &OrderId) -> Result<Option<Order>, CacheError>;

    /// Caches an order, replacing any older copy.
    ///
    /// # Errors
    /// On a backend failure (the next read goes to the store).
    async fn put(&self, order: &Order) -> Result<(), CacheError>;

    /// Caches several orders (a consumer batch's newly final ones). A backend over the network
    /// sends them in one round trip; this default puts them one by one.
    ///
    /// # Errors
    /// On a backend failure; orders before it may be cached.
    async fn put_many(&self, orders: &[Order]) -> Result<(), CacheError> {
        for order in orders {
            self.put(order).await?;
        }
        Ok(())
    }
}
