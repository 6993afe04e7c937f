//! Which events of one publish travel in one message, and how many events a message carries
//! on average (the broker counts messages; operators and backpressure want events).

use std::sync::atomic::{AtomicU64, Ordering};

use ordermill_core::ports::Envelope;

/// Groups the routed events (`routed(key)`) by routing key, in order of first appearance, at
/// most `max` per group. Events nobody is bound for are left out.
pub(crate) fn group(
    events: &[Envelope],
    max: usize,
    routed: impl Fn(&str) -> bool,
) -> Vec<Vec<&Envelope>> {
    let max = max.max(1);
    let mut groups: Vec<Vec<&Envelope>> = Vec::new();
    // Index of the group still open for each key seen; a publish carries a handful of keys.
    let mut open: Vec<(&str, usize)> = Vec::new();
    for event in events {
        let key = &*event.routing_key;
        match open.iter_mut().find(|(k, _)| *k == key) {
            Some((_, at)) if groups[*at].len() < max => groups[*at].push(event),
            Some((_, at)) => {
                *at = groups.len();
                groups.push(vec![event]);
            }
            None if routed(key) => {
                open.push((key, groups.len()));
                groups.push(vec![event]);
            }
            None => {}
        }
    }
    groups
}

/// Running totals of events and the messages that carried them.
#[derive(Default)]
pub(crate) struct Carried {
    events: AtomicU64,
    messages: AtomicU64,
}

impl Carried {
    pub(crate) fn record(&self, events: usize, messages: usize) {
        self.events.fetch_add(events as u64, Ordering::Relaxed);
        self.messages.fetch_add(messages as u64, Ordering::Relaxed);
    }

    /// `messages` of a work queue in events, at the mean seen so far (1 before anything was
    /// seen). An estimate: the queue may hold messages of other sizes than this node's.
    pub(crate) fn events_in(&self, messages: u64) -> u64 {
        let seen = self.messages.load(Ordering::Relaxed);
        if seen == 0 {
            return messages;
        }
        let events = self.events.load(Ordering::Relaxed);
        u64::try_from(u128::from(messages) * u128::from(events) / u128::from(seen))
            .unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use uuid::Uuid;

    use super::*;

    fn event(key: &str) -> Envelope {
        Envelope { event_id: Uuid::now_v7(), routing_key: Arc::from(key), payload: Arc::from("{}") }
    }

    fn keys(groups: &[Vec<&Envelope>]) -> Vec<(String, usize)> {
        groups.iter().map(|g| (g[0].routing_key.to_string(), g.len())).collect()
    }

    #[test]
    fn events_group_by_key_in_first_seen_order_and_unrouted_ones_drop() {
        let events: Vec<Envelope> =
            ["a", "b", "a", "nobody", "a", "b"].into_iter().map(event).collect();
        let groups = group(&events, 10, |k| k != "nobody");
        assert_eq!(keys(&groups), [("a".to_owned(), 3), ("b".to_owned(), 2)]);
        // Within a group the publish order is kept.
        let a: Vec<Uuid> = groups[0].iter().map(|e| e.event_id).collect();
        assert_eq!(a, [events[0].event_id, events[2].event_id, events[4].event_id]);
    }

    #[test]
    fn a_group_never_exceeds_the_maximum() {
        let events: Vec<Envelope> = (0..7).map(|_| event("a")).collect();
        let sizes: Vec<usize> = group(&events, 3, |_| true).iter().map(Vec::len).collect();
        assert_eq!(sizes, [3, 3, 1]);
        let ones: Vec<usize> = group(&events, 1, |_| true).iter().map(Vec::len).collect();
        assert_eq!(ones, [1; 7]);
    }

    #[test]
    fn message_counts_convert_at_the_mean_seen() {
        let carried = Carried::default();
        assert_eq!(carried.events_in(5), 5, "nothing seen: one event per message");
        carried.record(30, 1);
        carried.record(10, 1);
        assert_eq!(carried.events_in(3), 60);
    }
}
