//! Benchmarking tools shipped with ordermill: the load generator and the reference server.
//! Nothing here is used by the service itself.
//!
//! # Layout
//! - [`run`]: the load generator behind `ordermill bench run` — keep-alive HTTP/1.1
//!   connections on tokio + hyper, closed or open loop (with coordinated-omission
//!   correction), flash-sale SKU skew, batching, an HDR latency summary and a JSON report.
//! - [`ceiling`]: the reference server — a bare axum handler that parses the same order JSON
//!   and answers 201. Measured in the same run as ordermill, it tells what this machine can
//!   do at all, so ordermill's figure can be given as a ratio rather than a noisy absolute.

pub mod ceiling;
pub mod run;

pub use run::{BenchError, Report, RunArgs, run};
