//! Flash-sale purchase limits: at most N units of a SKU per customer. The limit itself is
//! enforced in memory at intake (see the server's `services::purchase_limits` module); the store keeps the
//! configured limits and can say what each customer already holds, to rebuild the counts
//! on start.

use async_trait::async_trait;

use crate::customer::CustomerId;
use crate::ports::store::StoreError;
use crate::sku::Sku;

/// Durable per-customer limits.
#[async_trait]
pub trait LimitStore: Send + Sync + 'static {
    /// Sets (`Some`) or removes (`None`) a SKU's per-customer limit.
    ///
    /// # Errors
    /// On a backend failure.
    async fn set_purchase_limit(&self, sku: &Sku, limit: Option<u32>) -> Result<(), StoreError>;

    /// Every SKU with a limit.
    ///
    /// # Errors
    /// On a backend failure.
    async fn purchase_limits(&self) -> Result<Vec<(Sku, u32)>, StoreError>;

    /// Units of `sku` each customer holds in orders that are not cancelled.
    ///
    /// # Errors
    /// On a backend failure or a row that does not parse.
    async fn units_by_customer(&self, sku: &Sku) -> Result<Vec<(CustomerId, u64)>, StoreError>;
}
