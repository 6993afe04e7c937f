//! The traits backends implement, each with its own error type.
//!
//! The server holds them as `Arc<dyn Trait>` chosen by configuration; each backend crate has a
//! contract test suite that every implementation must pass.

pub mod bus;
pub mod cache;
pub mod deals;
pub mod limits;
pub mod notify;
pub mod outbox;
pub mod payment;
pub mod rate_limit;
pub mod read_cache;
pub mod reports;
pub mod store;

pub use bus::{
    BusError, BusLedger, DeadLetter, DeadLetterPage, DeadLetterSelection, Delivery, Envelope,
    EventBus, LedgerEntry, QueueDepth,
};
pub use cache::{CacheError, Epoch, StockCache};
pub use deals::{DealStore, ExpiredDeal, JoinOutcome};
pub use limits::LimitStore;
pub use notify::{Notification, Notifier, NotifyError};
pub use outbox::Outbox;
pub use payment::{ChargeError, ChargeRequest, PaymentGateway};
pub use rate_limit::{RateLimiter, RateQuota};
pub use read_cache::OrderReadCache;
pub use reports::{Claim, FILE_CHUNK, ReportFiles, ReportStore};
pub use store::{
    AcceptedOrder, Effect, EffectOutcome, OrderFilter, OrderQuery, OrderStore, StoreError,
};
