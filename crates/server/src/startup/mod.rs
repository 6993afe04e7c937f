//! Startup wiring: the typed [`settings`], the engines they name ([`backends`]), the
//! [`app::Application`] that builds a node and runs it until stopped, and the one-shot
//! maintenance [`tools`] (`ordermill migrate`, `ordermill dlq`).

pub mod app;
pub mod backends;
pub mod clock;
pub mod listener;
pub mod maintenance;
mod prebound;
pub mod settings;
pub mod sql_store;
pub mod tools;
