//! Cache backends: the [`ordermill_core::ports::StockCache`] (hot stock) and
//! [`ordermill_core::ports::OrderReadCache`] (orders by id) implementations.
//!
//! # Layout
//! - [`local`]: in-process, one atomic counter per SKU, order views in moka; the embedded
//!   default.
//!   Request budgets ([`ordermill_core::ports::RateLimiter`]) with governor.
//! - `order_format`: how an order is kept where it outlives a process (versioned).
//! - [`redis`]: in Redis, shared by every node; reservations are Lua scripts, cached orders
//!   are keys with a time to live in `order_format`, the cache's own versioned format;
//!   request budgets are one GCRA script on Redis's clock, shared by every node.
//! - [`contract`]: the test suite every backend must pass (public so the server and later
//!   backends run the same checks).
//!
//! No storage of record lives here: the cache is rebuilt from the store at start.

pub mod contract;
pub mod local;
mod order_format;
pub mod redis;

pub use local::{LocalOrderCache, LocalRateLimiter, LocalStockCache};
pub use redis::{RedisOrderCache, RedisRateLimiter, RedisStockCache};
