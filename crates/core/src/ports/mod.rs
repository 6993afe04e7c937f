//! The traits backends implement, each with its own error type.
//!
//! The server holds them as `Arc<dyn Trait>` chosen by configuration; each backend crate has a
//! contract test suite that every implementation must pass.

pub mod cache;
pub mod store;

pub use cache::{CacheError, StockCache};
pub use store::{AcceptedOrder, OrderStore, StoreError};
