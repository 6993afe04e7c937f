//! Why an order was not accepted, as intake tells the HTTP adapter (which maps each to a status
//! and an error code).

use std::time::Duration;

use ordermill_core::ports::CacheError;
use ordermill_core::{Sku, ValidationError};
use thiserror::Error;

/// Why an order was not accepted.
#[derive(Debug, Clone, Error)]
pub enum IntakeError {
    /// The request breaks a domain rule.
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    /// A SKU is not in the catalog.
    #[error("sku {0} is not in the catalog")]
    UnknownSku(Sku),
    /// Not enough units of a SKU.
    #[error("sku {0} is out of stock")]
    OutOfStock(Sku),
    /// The customer would hold more of a SKU than its per-customer limit allows.
    #[error("sku {sku} is limited to {limit} per customer; this customer already holds {held}")]
    LimitExceeded {
        /// The SKU.
        sku: Sku,
        /// Its limit.
        limit: u32,
        /// Units the customer holds already.
        held: u64,
    },
    /// The store of record refused the order: the customer's orders through every node already
    /// reach the SKU's per-customer limit (this node's own count had room).
    #[error(
        "sku {sku} is limited per customer, and this customer's orders (through any node) \
         already reach its limit"
    )]
    LimitReached {
        /// The SKU.
        sku: Sku,
    },
    /// The idempotency key was used before for a different request.
    #[error(
        "this Idempotency-Key was already used for a different request; use a new key for a new order"
    )]
    IdempotencyMismatch,
    /// Another request with the same idempotency key is running.
    #[error("a request with this Idempotency-Key is still being processed; retry shortly")]
    IdempotencyInProgress,
    /// The store or cache failed; nothing was written and no stock is held.
    #[error("the order could not be made durable: {0}")]
    Unavailable(String),
    /// The hot-stock counts were lost and are being rebuilt from the store: nothing can be
    /// sold for a few seconds, and nothing is sold out either.
    #[error("stock is being recounted from the store after the cache lost it; retry in a moment")]
    StockRecounting,
    /// Too many messages wait in the bus; the client should come back shortly.
    #[error("the order pipeline is {backlog} messages behind (limit {limit}); retry in a moment")]
    Overloaded {
        /// Messages waiting now.
        backlog: u64,
        /// The configured bound.
        limit: u64,
    },
    /// The node is saturated: the order waited longer than `http.max_queue_wait` before it
    /// could be committed, and was not written.
    #[error(
        "this node is saturated (the order waited {} ms, limit http.max_queue_wait); nothing was written, retry in a moment",
        waited.as_millis()
    )]
    Shed {
        /// How long it had waited.
        waited: Duration,
    },
    /// The order was queued for its commit in time, but the commit before it ran long (the
    /// store was slow to finish it: on a shared disk, a flush that stalls) and by the time its
    /// own commit formed it had waited longer than `http.max_queue_wait`; it was not written.
    #[error(
        "the order waited {} ms behind a commit the store was slow to finish (limit http.max_queue_wait); nothing was written, retry in a moment",
        waited.as_millis()
    )]
    SlowCommit {
        /// How long it had waited.
        waited: Duration,
    },
    /// The node already works on `http.max_in_flight` order requests; this one was refused
    /// at once, nothing written.
    #[error(
        "this node is saturated ({limit} order requests in progress, limit http.max_in_flight); nothing was written, retry in a moment"
    )]
    Full {
        /// The limit.
        limit: usize,
    },
    /// The node is shutting down and takes no new orders.
    #[error("this node is shutting down; retry on another node or in a moment")]
    ShuttingDown,
}

impl IntakeError {
    /// The machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(e) => e.code(),
            Self::UnknownSku(_) => "unknown_sku",
            Self::OutOfStock(_) => "out_of_stock",
            Self::LimitExceeded { .. } | Self::LimitReached { .. } => "limit_exceeded",
            Self::IdempotencyMismatch => "idempotency_key_reused",
            Self::IdempotencyInProgress => "idempotency_key_in_use",
            Self::Unavailable(_) => "store_unavailable",
            Self::StockRecounting => "unavailable",
            Self::Overloaded { .. }
            | Self::Shed { .. }
            | Self::SlowCommit { .. }
            | Self::Full { .. } => "overloaded",
            Self::ShuttingDown => "shutting_down",
        }
    }
}

impl From<crate::services::purchase_limits::LimitExceeded> for IntakeError {
    fn from(e: crate::services::purchase_limits::LimitExceeded) -> Self {
        IntakeError::LimitExceeded { sku: e.sku, limit: e.limit, held: e.held }
    }
}

impl From<CacheError> for IntakeError {
    fn from(e: CacheError) -> Self {
        match e {
            CacheError::OutOfStock { sku } => IntakeError::OutOfStock(sku),
            CacheError::Lost => IntakeError::StockRecounting,
            other => IntakeError::Unavailable(other.to_string()),
        }
    }
}
