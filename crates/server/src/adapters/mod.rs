//! Adapters: how the services meet the outside world.
//!
//! - [`http`]: the API, one module per noun, each with its `router()`, and `http::error`, the
//!   one place errors become status codes and JSON bodies.
//! - [`workers`]: the consumers (inventory, payment, notify) and their retry loop.
//! - [`integrations`]: payment gateways (simulated, http) and notifiers (log, webhook).

pub mod http;
pub mod integrations;
pub mod workers;
