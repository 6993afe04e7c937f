//! Consumers: one module per queue, each a [`Handler`] run by [`runner::run`] loops; and the
//! effects that come from elsewhere but settle the same way: the payment provider's callbacks
//! and the payment deadlines ([`pay_later`]), operators' cancellations ([`order_admin`]).
//!
//! A handler turns a batch of deliveries into effects, applies them in ONE store
//! transaction together with "consumer X processed event E" (so a redelivery causes no
//! second effect), then [`settle`] publishes the events the effects emitted, gives released
//! units back to the hot-stock cache and refreshes the read cache.

pub mod inventory;
pub mod notify;
pub mod order_admin;
pub mod pay_later;
pub mod payment;
pub mod reports;
pub mod runner;
pub mod settle;

use std::sync::Arc;

use async_trait::async_trait;
use ordermill_core::ports::{Delivery, EventBus, Notifier, OrderStore, PaymentGateway, StockCache};
use ordermill_core::{Clock, OrderIdGenerator};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::services::order_cache::OrderCache;
use crate::startup::settings::WorkerSettings;

/// What to do with one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done (or already done before).
    Ack,
    /// Failed for now; retry with backoff (dead-lettered after the last attempt).
    Retry(String),
    /// Will never succeed (a malformed event); dead-letter now.
    Dead(String),
    /// An engine (the store, the broker, the cache) failed, not the message: the consumer
    /// holds it and handles it again once the engine is back, without spending an attempt.
    Unavailable(String),
}

/// A queue's consumer logic.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Handles a batch; one outcome per delivery, in the same order.
    async fn handle(&self, batch: &[Delivery]) -> Vec<Outcome>;
}

/// What the consumers share.
#[derive(Clone)]
pub struct Pipeline {
    /// The store of record.
    pub store: Arc<dyn OrderStore>,
    /// The bus.
    pub bus: Arc<dyn EventBus>,
    /// Hot stock, to give released units back.
    pub cache: Arc<dyn StockCache>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// Ids for emitted events.
    pub ids: Arc<OrderIdGenerator>,
    /// The order read cache, refreshed on status changes.
    pub order_cache: OrderCache,
    /// The payment gateway.
    pub gateway: Arc<dyn PaymentGateway>,
    /// The notifier.
    pub notifier: Arc<dyn Notifier>,
    /// Per-customer limits: a cancelled order's units count no more.
    pub purchase_limits: Arc<crate::services::purchase_limits::PurchaseLimits>,
    /// How long one outside call (a charge, a notification) may take before it counts as a
    /// transient failure of that message alone.
    pub message_timeout: std::time::Duration,
    /// Routing keys no queue of the topology is bound to: effects emit no event of these.
    pub unrouted: ordermill_core::RoutingKeys,
    /// Pay later (`payment.mode = "await_callback"`): how long a customer has to pay once
    /// the order has its payment URL. `None`: orders are charged (`charge`).
    pub pay_later: Option<std::time::Duration>,
    /// Reports, run by the consumer of `reports`.
    pub reports: Arc<crate::services::reports::Reports>,
}

/// Starts `concurrency` consumer loops for every queue of the topology that has a handler
/// (of the queues in `only`, when given).
/// A queue without one (a binding added for an outside consumer) is left alone and logged.
pub fn spawn_all(
    pipeline: &Pipeline,
    settings: &WorkerSettings,
    only: Option<&[String]>,
    tasks: &TaskTracker,
    stop: &CancellationToken,
) {
    for queue in pipeline.bus.queues() {
        if only.is_some_and(|only| !only.contains(&queue)) {
            continue;
        }
        let handler: Arc<dyn Handler> = match queue.as_str() {
            "inventory" => Arc::new(inventory::Inventory::new(pipeline.clone())),
            "payment" => Arc::new(payment::Payment::new(pipeline.clone())),
            "notify" => Arc::new(notify::Notify::new(pipeline.clone())),
            "reports" => Arc::new(reports::ReportRuns::new(pipeline.reports.clone())),
            other => {
                tracing::warn!(
                    queue = other,
                    "No built-in consumer for this queue; its messages wait for an outside one."
                );
                continue;
            }
        };
        let own = settings.for_queue(&queue);
        // Reports are long and read the store heavily: one at a time per process, so they
        // never crowd out the other consumers.
        let loops = if queue == "reports" { 1 } else { settings.concurrency.max(1) };
        for _ in 0..loops {
            tasks.spawn(runner::run(
                queue.clone(),
                handler.clone(),
                pipeline.bus.clone(),
                own.clone(),
                stop.clone(),
            ));
        }
    }
}
