//! The service layer: what a node does with orders, between the adapters that talk to the
//! outside and the engines behind the core ports. Rules themselves live in `ordermill_core`;
//! these modules sequence them over the ports.
//!
//! - [`intake`]: placing orders (validation → idempotency → hot-stock reservation → group
//!   commit).
//! - [`catalog`]: products in memory for pricing at intake, written through to the store and
//!   the hot-stock cache.
//! - [`deals`]: group buying (open, join, complete) and the deadline scheduler.
//! - [`purchase_limits`]: per-customer purchase limits, enforced in memory at intake.
//! - [`order_cache`]: the order read cache behind `GET /api/orders/{id}`.
//! - [`lease`]: this api node's lease on shared hot-stock counts, and its fences.
//! - [`epoch_check`]: after a commit, whether the shared counts were set anew under it.
//! - [`stock_repair`]: rebuilds hot-stock counts a shared cache lost, from the store.
//! - [`reports`]: reports (报表): requests, runs, files written as CSV or XLSX, the sweeper.
//! - [`unclear`]: reading back a write whose outcome a store failure left unclear.
//! - [`unreturned`]: units a node could not give back to the shared counts end in a rebuild.

pub mod catalog;
pub mod deals;
pub mod epoch_check;
pub mod intake;
pub mod lease;
pub mod order_cache;
pub mod purchase_limits;
pub mod reports;
pub mod stock_repair;
pub mod unclear;
pub mod unreturned;
