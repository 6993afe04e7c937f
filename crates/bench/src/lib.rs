//! Benchmarking helpers shipped with ordermill.
//!
//! # Layout
//! - [`ceiling`]: the reference server — a bare axum handler that parses the same order JSON
//!   and answers 201. Measured in the same run as ordermill, it tells what this machine can
//!   do at all, so ordermill's figure can be given as a ratio rather than a noisy absolute.
//!
//! The load generator itself (`ordermill bench run`) is not built yet; until it is, drive
//! both servers with `wrk` and `scripts/bench/order.lua` (see docs/BENCHMARKS.md).

pub mod ceiling;
