//! Cache backends: the [`ordermill_core::ports::StockCache`] (hot stock) and
//! [`ordermill_core::ports::OrderReadCache`] (order views) implementations.
//!
//! # Layout
//! - [`local`]: in-process, one atomic counter per SKU, order views in moka; the embedded
//!   default.
//! - [`redis`]: in Redis, shared by every node; reservations are Lua scripts, order views are
//!   keys with a time to live.
//! - [`contract`]: the test suite every backend must pass (public so the server and later
//!   backends run the same checks).
//!
//! No storage of record lives here: the cache is rebuilt from the store at start.

pub mod contract;
pub mod local;
pub mod redis;

pub use local::{LocalOrderCache, LocalStockCache};
pub use redis::{RedisOrderCache, RedisStockCache};
