//! Benchmarking tools shipped with ordermill: the load generator, the reference server, the
//! downstream stubs, the synchronous baseline and the comparison that drives them. Nothing here
//! is used by the service itself.
//!
//! # Layout
//! - [`run`](mod@run): the load generator behind `ordermill bench run` — keep-alive HTTP/1.1
//!   connections on tokio + hyper, closed or open loop (with coordinated-omission
//!   correction), flash-sale SKU skew, batching, an HDR latency summary and a JSON report;
//!   with `--e2e`, accept→confirmed latency of a sample of the accepted orders.
//! - [`ceiling`]: the reference server — a bare axum handler that parses the same order JSON
//!   and answers 201. Measured in the same run as ordermill, it tells what this machine can
//!   do at all, so ordermill's figure can be given as a ratio rather than a noisy absolute.
//! - [`stubs`]: `ordermill bench stubs` — slow inventory, payment and notify services with a
//!   fixed latency each, a payment failure share, and a switch to take one down.
//! - [`sync_baseline`]: the synchronous "before" design, which calls the three stubs one
//!   after another inside `POST /api/orders`.
//! - [`broker_ceiling`]: `ordermill bench broker-ceiling` — RabbitMQ's own rate for
//!   ordermill's topology (one topic exchange, `order.created` fanned out to durable queues):
//!   persistent publishes with a confirm window, then every copy consumed with manual acks,
//!   on throw-away `bench-ceiling-<uuid>` objects.
//! - [`compare`]: `ordermill bench compare` — the same load against the baseline and against
//!   a spawned ordermill, then a payment outage against both, and the catch-up after it.

pub mod broker_ceiling;
pub mod ceiling;
pub mod compare;
mod order_request;
pub mod run;
pub mod stubs;
pub mod sync_baseline;

pub use run::{BenchError, Report, RunArgs, run};
