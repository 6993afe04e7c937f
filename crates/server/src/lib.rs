//! The ordermill service: HTTP API, intake (validation → idempotency → hot-stock reservation
//! → group commit), the catalog, telemetry, and [`Application`], which wires backends chosen
//! by [`Settings`] and owns start and stop.
//!
//! # Layout
//! - [`app`]: `Application::build(settings)` and `run_until_stopped(shutdown)`.
//! - [`backends`]: opens the store, bus and cache the settings name (embedded or scaled out).
//! - [`settings`]: the typed configuration (file → env → flags merging is the binary's job).
//! - [`catalog`]: products in memory for pricing at intake, written through to the store and
//!   the hot-stock cache.
//! - [`intake`]: placing orders; [`intake::committer`] batches every pending order into one
//!   durable transaction (group commit); [`intake::idempotency`] replays retried requests.
//! - [`http`]: one module per noun, each with its `router()`, and [`http::error`], the one
//!   place errors become status codes and JSON bodies.
//! - [`workers`]: the consumers (inventory, payment, notify) and their retry loop.
//! - [`deals`]: group buying (open, join, complete) and the deadline scheduler.
//! - [`limits`]: per-customer purchase limits, enforced in memory at intake.
//! - [`integrations`]: payment gateways (simulated, http) and notifiers (log, webhook).
//! - [`offline`]: `ordermill dlq` on a stopped node's data dir.
//! - [`order_cache`]: the order read cache behind `GET /api/orders/{id}`.
//! - [`telemetry`]: metric names and the Prometheus recorder.
//!
//! Backends (SQLite and PostgreSQL stores, local and Redis caches, embedded and RabbitMQ buses)
//! live in their own crates behind the `core` traits; nothing here knows SQL or AMQP.

pub mod app;
pub mod backends;
pub mod catalog;
pub mod deals;
pub mod http;
pub mod intake;
pub mod integrations;
pub mod limits;
pub mod offline;
pub mod order_cache;
pub mod settings;
pub mod telemetry;
pub mod workers;

pub use app::{Application, Role, StartError};
pub use settings::{LogFormat, Settings};
