//! Which queues receive which events: bindings of queues to topic patterns on the `orders`
//! exchange. Configuration, not code: a new consumer binds without touching old ones.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use crate::event::{RoutingKey, topic_matches};

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
        self.bound(key).into_iter().map(|i| self.0[i].queue.as_str()).collect()
    }

    /// The positions in [`Topology::queues`] of the queues bound for `key`.
    fn bound(&self, key: &str) -> Vec<usize> {
        (0..self.0.len())
            .filter(|&i| self.0[i].keys.iter().any(|pattern| topic_matches(pattern, key)))
            .collect()
    }
}

/// Where each routing key goes, worked out once from a [`Topology`]: a bus routes every event
/// it carries, and matching each one against every binding's patterns was ~7% of `serve`'s
/// request threads (callgrind; docs/BENCHMARKS.md). The keys this version emits are looked up;
/// any other is matched when it comes.
#[derive(Debug, Clone)]
pub struct Routes {
    topology: Topology,
    /// The queues of `RoutingKey::ALL[i]`, as positions in [`Topology::queues`].
    known: Vec<Vec<usize>>,
}

impl Routes {
    /// Matches every key this version emits against `topology`'s bindings.
    pub fn new(topology: Topology) -> Routes {
        let known = RoutingKey::ALL.iter().map(|key| topology.bound(key.as_str())).collect();
        Routes { topology, known }
    }

    /// The bindings these routes were worked out from.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The positions in [`Topology::queues`] of the queues an event with `key` goes to, each
    /// once.
    pub fn queues_for(&self, key: &str) -> Cow<'_, [usize]> {
        match RoutingKey::ALL.iter().position(|known| known.as_str() == key) {
            Some(i) => Cow::Borrowed(&self.known[i]),
            None => Cow::Owned(self.topology.bound(key)),
        }
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

    #[test]
    fn routes_agree_with_the_bindings_for_every_key() {
        let topology = Topology(vec![
            Binding { queue: "audit".into(), keys: vec!["#".into()] },
            Binding { queue: "orders".into(), keys: vec!["order.*".into(), "order.#".into()] },
            Binding { queue: "late".into(), keys: vec!["*.refund_required".into()] },
        ]);
        let routes = Routes::new(topology.clone());
        let names = topology.queues();
        let keys = RoutingKey::ALL.iter().map(|k| k.as_str()).chain(["order.created.v2", "x"]);
        for key in keys {
            let routed: Vec<&str> =
                routes.queues_for(key).iter().map(|&i| names[i].as_str()).collect();
            assert_eq!(routed, topology.queues_for(key), "{key}");
        }
        assert_eq!(&*routes.queues_for("order.created"), &[0, 1]);
        assert_eq!(&*routes.queues_for("payment.refund_required"), &[0, 2]);
        assert_eq!(&*routes.queues_for("x"), &[0]);
    }
}
