//! One queue's in-memory state.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use ordermill_core::ports::{DeadLetter, Envelope, QueueDepth};
use tokio::time::Instant;

/// A message waiting for (another) delivery.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub envelope: Envelope,
    /// The attempt number its next delivery will carry.
    pub attempt: u32,
    /// Handed out before (see [`ordermill_core::ports::Delivery::redelivered`]).
    pub redelivered: bool,
}

/// A delayed message, ordered by due time then arrival (so the heap never compares bodies).
#[derive(Debug)]
pub(crate) struct Delayed {
    pub due: Instant,
    pub seq: u64,
    pub pending: Pending,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

#[derive(Debug, Default)]
pub(crate) struct QueueState {
    pub ready: VecDeque<Pending>,
    pub delayed: BinaryHeap<Reverse<Delayed>>,
    pub in_flight: HashMap<u64, Pending>,
    pub dead: Vec<DeadLetter>,
    pub delayed_seq: u64,
}

impl QueueState {
    pub fn delay(&mut self, pending: Pending, due: Instant) {
        self.delayed_seq += 1;
        self.delayed.push(Reverse(Delayed { due, seq: self.delayed_seq, pending }));
    }

    /// Moves every delayed message that is due to the back of `ready`; returns the next due
    /// time still in the future, if any.
    pub fn promote_due(&mut self, now: Instant) -> Option<Instant> {
        while let Some(Reverse(next)) = self.delayed.peek() {
            if next.due > now {
                return Some(next.due);
            }
            if let Some(Reverse(due)) = self.delayed.pop() {
                self.ready.push_back(due.pending);
            }
        }
        None
    }

    pub fn depth(&self) -> QueueDepth {
        QueueDepth {
            ready: self.ready.len() as u64,
            delayed: self.delayed.len() as u64,
            in_flight: self.in_flight.len() as u64,
            dead: self.dead.len() as u64,
        }
    }
}
