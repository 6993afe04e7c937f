//! The ordermill service, in layers:
//!
//! - [`startup`]: typed settings, the engines they name, [`Application`] (build a node, run
//!   it until stopped), and the maintenance tools behind `ordermill migrate` and `dlq`.
//! - [`services`]: intake, the catalog, group-buy deals, purchase limits and the order read
//!   cache — what a node does, over the core ports.
//! - [`adapters`]: the HTTP API, the queue consumers, and the payment and notify integrations.
//! - [`telemetry`]: metric names and the Prometheus recorder.
//!
//! Business rules live in `ordermill_core`; backends (SQLite and PostgreSQL stores, local and
//! Redis caches, embedded and RabbitMQ buses) live in their own crates behind the core ports.
//! Nothing here knows SQL or AMQP.

pub mod adapters;
pub mod services;
pub mod startup;
pub mod telemetry;

pub use startup::app::{Application, Role, StartError};
pub use startup::settings::{LogFormat, Settings};
