//! Order store backends: the [`ordermill_core::ports::OrderStore`] implementations.
//!
//! # Layout
//! - [`sqlite`]: the embedded default, one file in the data dir (WAL, fsync per commit), all
//!   writes on one dedicated thread, reads on a small pool of read-only connections.
//! - [`contract`]: the suite every backend passes (public so each backend's tests call it).
//!
//! Batching (group commit) is decided by the server's committer, not here: a store only
//! makes one call's batch durable in one transaction.

pub mod contract;
pub mod sqlite;

pub use sqlite::SqliteStore;
