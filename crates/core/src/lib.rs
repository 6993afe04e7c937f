//! The ordermill domain: what an order, a product, a SKU, a quantity and an amount of money
//! are, the rules they obey, and the traits (ports) that storage and cache backends implement.
//!
//! There is no I/O here: no tokio, no SQL, no HTTP. Everything is pure and unit/property
//! tested; the server crate wires backends to these traits.
//!
//! # Layout
//! - [`money`]: exact money in integer minor units, parsed from and printed as `"19.99"`.
//! - [`sku`], [`quantity`], [`customer`]: validated newtypes that cannot hold a bad value.
//! - [`product`]: a catalog entry (name, price, stock of record).
//! - [`order`]: an order, its lines and totals; [`order_id`]: time-ordered ids (UUIDv7).
//! - [`deal`]: group-buy deals (group size, deadline, who may join).
//! - [`event`]: the events an order emits, routing keys and topic matching.
//! - [`lifecycle`]: the order state machine (accepted → confirmed / cancelled).
//! - [`effect`]: what a consumer's effect writes (state, stock per line, ledger, events).
//! - [`topology`]: which queues are bound to which routing keys.
//! - [`clock`]: the time source, fakeable in tests.
//! - [`duration`]: [`HumanDuration`], the configuration's one duration type (`"250ms"`).
//! - [`redact`]: [`redact_url`], the one way a URL is shown in logs, errors and config output.
//! - [`report`]: reports (报表): what may be asked for, their life, their rows as typed cells.
//! - [`error`]: [`ValidationError`], with the stable machine-readable codes clients see.
//! - [`ports`]: the traits backends implement (store, cache, bus, outbox, payment gateway,
//!   notifier).
//! - [`test_support`]: `service_url`, which tests of real services use to find (or skip) them.

pub mod clock;
pub mod customer;
pub mod deal;
pub mod duration;
pub mod effect;
pub mod error;
pub mod event;
pub mod lifecycle;
pub mod money;
pub mod order;
pub mod order_id;
pub mod outside;
pub mod ports;
pub mod product;
pub mod quantity;
pub mod redact;
pub mod report;
pub mod sku;
pub mod test_support;
pub mod topology;

pub use clock::{AnchoredClock, Clock, ManualClock, SystemClock, UnixMillis};
pub use customer::CustomerId;
pub use deal::{
    Admission, Deal, DealId, DealMember, DealStatus, GroupSize, JoinRefusal, SettledMember,
};
pub use duration::HumanDuration;
pub use effect::{AppliedEffect, PaymentRecord};
pub use error::ValidationError;
pub use event::{EventHeader, OutboxEvent, RoutingKey, RoutingKeys, topic_matches};
pub use lifecycle::{
    Fact, Lifecycle, PaymentState, StockAction, StockDelta, StockState, Transition,
};
pub use money::Money;
pub use order::{
    AwaitedPayment, DeadlineChange, HistoryNote, IdempotencyKey, Order, OrderLine, OrderStatus,
    StatusChange, units_by_sku,
};
pub use order_id::{OrderId, OrderIdGenerator, first_id_at};
pub use product::{Product, ProductName, StockBelowHeld, StockLevel};
pub use quantity::Quantity;
pub use redact::redact_url;
pub use sku::Sku;
pub use topology::{Binding, Routes, Topology};
