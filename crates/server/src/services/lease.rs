//! This api node's lease on the shared hot-stock counts, and the fence it puts up when the
//! lease lapses.
//!
//! Scaled out, every api node renews a lease on Redis (`redis.node_ttl`). A node whose lease
//! ran out — killed, or alive but cut off or paused longer than the ttl — is presumed dead by
//! the others: its entry is dropped and the counts are rebuilt from the store, which frees
//! whatever it had reserved and not committed. If that node is in fact alive, two things must
//! not happen when it comes back: selling from counts it no longer has a say in, and
//! committing an order whose units the rebuild already put back on sale (the store's guard
//! would refuse an actual oversell, but the counts would then offer more than the store has
//! until the next rebuild). So the node judges its own lease with its monotonic clock, from
//! when each renewal was *sent* — never later than Redis, which counts from when it arrived:
//! - no reservation while the lease is not held (503 `unavailable`, as during a rebuild);
//! - no commit of orders reserved before the lease last lapsed: answered 503, their units not
//!   given back to the counts, and the counts marked lost (by the committer) so that they are
//!   recounted from the store, which never saw those orders — whether the others noticed the
//!   lapse or only this node did.
//!
//! The counts can also be set anew from the store while this node holds its lease: a rebuild
//! after Redis lost them, a node starting while they were lost. Orders reserved before that
//! and still uncommitted were not in that read, so their units are on sale again. Every
//! reservation carries the [`Epoch`] of the counts it came from, and the node remembers the
//! newest epoch it has seen:
//! - no commit of orders reserved under an older epoch than one this node has seen: answered
//!   503, their units not given back (the newer counts have them already), nothing to recount;
//! - after a commit, the counts' epoch is read again (`services/epoch_check.rs`): newer than
//!   the oldest of its orders' means the read may have missed them, and the counts are
//!   marked lost to be recounted with them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use ordermill_core::ports::{CacheError, Epoch};
use std::time::{Duration, Instant};

/// The lease as this node knows it.
#[derive(Debug)]
pub struct Lease {
    /// `None`: a node that shares its counts with nobody holds them unconditionally.
    state: Option<Mutex<State>>,
    /// The newest [`Epoch`] of the counts this node has seen.
    newest_epoch: AtomicU64,
}

#[derive(Debug, Clone, Copy)]
struct State {
    valid_until: Instant,
    /// The start of the current unbroken run of renewals.
    held_since: Instant,
}

/// What a renewal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Renewal {
    /// Held throughout.
    Unbroken,
    /// The lease had lapsed before this renewal: the node rejoins.
    AfterLapse,
}

impl Lease {
    /// A node alone on its counts (`serve`, or a node-local cache): always held.
    pub fn unconditional() -> Lease {
        Lease { state: None, newest_epoch: AtomicU64::new(0) }
    }

    /// A lease taken by a renewal sent at `sent_at`, valid for `ttl`.
    pub fn taken(sent_at: Instant, ttl: Duration) -> Lease {
        let state = State { valid_until: sent_at + ttl, held_since: sent_at };
        Lease { state: Some(Mutex::new(state)), newest_epoch: AtomicU64::new(0) }
    }

    /// Records a renewal sent at `sent_at` that the cache confirmed.
    pub fn renewed(&self, sent_at: Instant, ttl: Duration) -> Renewal {
        let Some(state) = &self.state else { return Renewal::Unbroken };
        let mut state = lock(state);
        let renewal = if sent_at < state.valid_until {
            Renewal::Unbroken
        } else {
            state.held_since = sent_at;
            Renewal::AfterLapse
        };
        state.valid_until = state.valid_until.max(sent_at + ttl);
        renewal
    }

    /// Whether this node may reserve now.
    pub fn held_at(&self, now: Instant) -> bool {
        self.state.as_ref().is_none_or(|state| now < lock(state).valid_until)
    }

    /// [`Lease::held_at`] now, as the error a reservation answers when it is not: the counts
    /// are (or are about to be) recounted, as after a loss.
    ///
    /// # Errors
    /// [`CacheError::Lost`] when the lease is not held.
    pub fn ensure_held(&self) -> Result<(), CacheError> {
        if self.held_at(Instant::now()) { Ok(()) } else { Err(CacheError::Lost) }
    }

    /// Whether orders reserved from `since` on may be committed at `now`: the lease was held
    /// throughout.
    pub fn admits_commit(&self, since: Instant, now: Instant) -> bool {
        self.state.as_ref().is_none_or(|state| {
            let state = lock(state);
            state.held_since <= since && now < state.valid_until
        })
    }

    /// Notes that the counts were of `epoch` when a reservation or a read answered.
    pub fn saw(&self, epoch: Epoch) {
        // Every reservation reports one, nearly always the same: read before writing, so the
        // request threads do not take turns on the cache line for nothing.
        if epoch.get() > self.newest_epoch.load(Ordering::Acquire) {
            self.newest_epoch.fetch_max(epoch.get(), Ordering::AcqRel);
        }
    }

    /// Whether orders reserved under `epoch` may be committed: no newer counts have been seen
    /// (see [`Epoch`]).
    pub fn admits_epoch(&self, epoch: Epoch) -> bool {
        !epoch.superseded_by(Epoch::new(self.newest_epoch.load(Ordering::Acquire)))
    }
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // The guarded section only copies a few instants; a poisoned lock still holds valid ones.
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(15);

    fn after(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    #[test]
    fn a_node_alone_always_holds_its_counts() {
        let lease = Lease::unconditional();
        let now = Instant::now();
        assert!(lease.held_at(after(now, 3600)));
        assert!(lease.admits_commit(now, after(now, 3600)));
    }

    #[test]
    fn renewals_in_time_keep_the_lease_unbroken() {
        let start = Instant::now();
        let lease = Lease::taken(start, TTL);
        assert_eq!(lease.renewed(after(start, 5), TTL), Renewal::Unbroken);
        assert_eq!(lease.renewed(after(start, 10), TTL), Renewal::Unbroken);
        assert!(lease.held_at(after(start, 24)));
        assert!(lease.admits_commit(after(start, 1), after(start, 24)));
    }

    #[test]
    fn past_its_ttl_without_renewal_the_node_stops_reserving_and_committing() {
        let start = Instant::now();
        let lease = Lease::taken(start, TTL);
        assert!(lease.held_at(after(start, 14)));
        assert!(!lease.held_at(after(start, 15)), "the ttl counts from the renewal's send");
        assert!(!lease.admits_commit(after(start, 10), after(start, 16)));
    }

    #[test]
    fn orders_reserved_before_a_lapse_are_not_committed_after_the_rejoin() {
        let start = Instant::now();
        let lease = Lease::taken(start, TTL);
        let reserved = after(start, 12);
        // Paused from 13 s to 40 s; the renewal sent at 40 s is the first since 0 s.
        assert_eq!(lease.renewed(after(start, 40), TTL), Renewal::AfterLapse);
        assert!(lease.held_at(after(start, 41)), "rejoined: it sells again");
        assert!(!lease.admits_commit(reserved, after(start, 41)));
        assert!(lease.admits_commit(after(start, 40), after(start, 41)), "reserved after");
        assert_eq!(lease.renewed(after(start, 45), TTL), Renewal::Unbroken);
    }

    #[test]
    fn orders_reserved_under_counts_since_set_anew_are_not_committed() {
        let lease = Lease::taken(Instant::now(), TTL);
        let (first, second) = (Epoch::new(1_000), Epoch::new(2_000));
        lease.saw(first);
        assert!(lease.admits_epoch(first));
        lease.saw(second);
        assert!(!lease.admits_epoch(first), "reserved before the counts were set anew");
        assert!(lease.admits_epoch(second));
        lease.saw(first);
        assert!(!lease.admits_epoch(first), "a late answer under the old counts changes nothing");
    }

    #[test]
    fn a_slow_renewal_never_shortens_the_lease() {
        let start = Instant::now();
        let lease = Lease::taken(after(start, 10), TTL);
        // A renewal sent earlier that was answered late.
        assert_eq!(lease.renewed(after(start, 5), TTL), Renewal::Unbroken);
        assert!(lease.held_at(after(start, 24)));
    }
}
