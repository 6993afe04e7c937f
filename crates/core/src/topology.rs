//! Which queues receive which events: bindings of queues to topic patterns on the `orders`
//! exchange. Configuration, not code: a new consumer binds without touching old ones.

use serde::{Deserialize, Serialize};

use crate::event::topic_matches;

/// One queue and the routing-key patterns it is bound with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Binding {
    /// The queue (also the consumer's name).
    pub queue: String,
    /// Topic patterns (`order.created`, `order.*`, `#`).
    pub keys: Vec<String>,
}

/// All bindings of the exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Topology(pub Vec<Binding>);

impl Default for Topology {
    /// The order pipeline: inventory deducts on `order.created` / `deal.joined` and releases
    /// on `payment.failed` / `deal.expired`; payment charges on `order.created` and, for
    /// group buys, on `deal.completed`; notify tells the customer about every step, and the
    /// merchant about money to give back (`payment.refund_required`); reports runs the
    /// reports merchants ask for (`report.requested`).
    fn default() -> Self {
        let bind = |queue: &str, keys: &[&str]| Binding {
            queue: queue.to_owned(),
            keys: keys.iter().map(|k| (*k).to_owned()).collect(),
        };
        Topology(vec![
            bind("inventory", &["order.created", "payment.failed", "deal.joined", "deal.expired"]),
            bind("payment", &["order.created", "deal.completed"]),
            bind(
                "notify",
                &[
                    "order.created",
                    "order.confirmed",
                    "order.cancelled",
                    "deal.*",
                    "payment.refund_required",
                ],
            ),
            bind("reports", &["report.requested"]),
        ])
    }
}

impl Topology {
    /// Queue names in configuration order.
    pub fn queues(&self) -> Vec<String> {
        self.0.iter().map(|b| b.queue.clone()).collect()
    }

    /// The queues an event with `key` goes to (each once, even if several patterns match).
    pub fn queues_for(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|b| b.keys.iter().any(|pattern| topic_matches(pattern, key)))
            .map(|b| b.queue.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_pipeline_routes_as_designed() {
        let t = Topology::default();
        assert_eq!(t.queues_for("order.created"), vec!["inventory", "payment", "notify"]);
        assert_eq!(t.queues_for("payment.failed"), vec!["inventory"]);
        assert_eq!(t.queues_for("order.confirmed"), vec!["notify"]);
        assert_eq!(t.queues_for("order.cancelled"), vec!["notify"]);
        assert!(t.queues_for("payment.succeeded").is_empty());
        assert_eq!(t.queues_for("deal.joined"), vec!["inventory", "notify"]);
        assert_eq!(t.queues_for("deal.completed"), vec!["payment", "notify"]);
        assert_eq!(t.queues_for("deal.expired"), vec!["inventory", "notify"]);
        assert_eq!(t.queues_for("payment.refund_required"), vec!["notify"]);
    }
}
