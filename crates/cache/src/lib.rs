//! Hot-stock cache backends: the [`ordermill_core::ports::StockCache`] implementations.
//!
//! # Layout
//! - [`local`]: in-process, one atomic counter per SKU; the embedded default.
//! - [`redis`]: in Redis, shared by every node; reservations are Lua scripts.
//! - [`contract`]: the test suite every backend must pass (public so the server and later
//!   backends run the same checks).
//!
//! No storage of record lives here: the cache is rebuilt from the store at start.

pub mod contract;
pub mod local;
pub mod redis;

pub use local::LocalStockCache;
pub use redis::RedisStockCache;
