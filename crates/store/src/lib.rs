//! Order store backends: the [`ordermill_core::ports::OrderStore`] implementations.
//!
//! # Layout
//! - [`sqlite`]: the embedded default, one file in the data dir (WAL, fsync per commit), all
//!   writes on one dedicated thread, reads on a small pool of read-only connections.
//! - [`postgres`]: the scaled-out backend, one PostgreSQL database shared by every node; one
//!   statement per group commit, an outbox claimed with leases, versioned SQL migrations in
//!   `migrations/postgres/` applied by [`PostgresStore::migrate`] (never implicitly).
//! - [`mysql`]: the same scaled-out role on MySQL 8 / MariaDB 10.6+, through the same
//!   contract: one transaction of multi-row statements per group commit, daily partitions,
//!   lock conflicts retried whole, migrations in `migrations/mysql/`.
//! - [`contract`]: the suite every backend passes (public so each backend's tests call it);
//!   [`deal_contract`]: the same for group-buy deals and purchase limits; [`report_contract`]:
//!   for reports; [`shared_contract`]: what a database several nodes share must get right
//!   (PostgreSQL and MySQL).
//!
//! Batching (group commit) is decided by the server's committer, not here: a store only
//! makes one call's batch durable in one transaction. Deal joins are the exception: each is
//! its own call, and the store decides the joins queued together in one transaction
//! ([`join`]: SQLite's writer, the shared-server stores' join queue).

mod batch;
pub mod contract;
mod deadline;
pub mod deal_contract;
mod decode;
pub mod files;
mod join;
mod join_queue;
pub mod mysql;
pub mod partitions;
mod pool;
mod pools;
pub mod postgres;
pub mod report_contract;
pub mod shared_contract;
pub mod sqlite;
mod url_tls;

pub use join_queue::{JOIN_TRANSACTION_JOINS, JOIN_TRANSACTION_SECONDS};
pub use mysql::MysqlStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
