//! Event bus backends: the [`ordermill_core::ports::EventBus`] implementations.
//!
//! # Layout
//! - [`embedded`]: an in-process topic exchange whose messages are the store's outbox rows;
//!   per-queue acks, retries and dead letters are recorded through
//!   [`ordermill_core::ports::BusLedger`], so a restart resumes where it stopped.
//! - [`rabbitmq`]: [`RabbitBus`] on RabbitMQ (topic exchange, TTL retry tiers, dead queues,
//!   publisher confirms, a reconnecting supervisor) and the outbox relay [`run_relay`].
//! - [`contract`]: the suite every backend passes (public so each backend's tests call it).
//!
//! What to do with a message (ack, retry, dead-letter) is the workers' decision, in the
//! server crate; the bus only carries it out.

pub mod contract;
pub mod embedded;
pub mod rabbitmq;

pub use embedded::EmbeddedBus;
pub use rabbitmq::{OUTBOX_OLDEST_SECONDS, RabbitBus, RabbitSettings, run_relay};
