//! The connection pool in use, replaced as a whole when one of its connections goes silent
//! (PostgreSQL and MySQL alike).
//!
//! A call cut off by its deadline (`deadline.rs`) says little about that one connection and
//! much about the path to the server: the pool's other connections were opened the same way
//! and, behind a frozen proxy or a cut that drops packets, went silent with it. Left in the
//! pool, each would hold the next call given it for a whole deadline, one after another.
//! Retiring the pool instead sends every later call to a new connection at once; the calls
//! already running on the old pool's connections end by their own deadlines.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use sqlx::{Database, Pool};

/// How long a retired pool's idle connections get to close politely.
const CLOSE_RETIRED: Duration = Duration::from_secs(5);

/// A pool and how many pools came before it.
pub(crate) struct Generation<DB: Database> {
    pub(crate) number: u64,
    pub(crate) pool: Pool<DB>,
}

// Derived `Clone` would ask `DB: Clone`; a pool is a handle whatever the database.
impl<DB: Database> Clone for Generation<DB> {
    fn clone(&self) -> Self {
        Generation { number: self.number, pool: self.pool.clone() }
    }
}

/// The current pool and how to open the next one.
pub(crate) struct Pools<DB: Database> {
    current: RwLock<Generation<DB>>,
    open: Box<dyn Fn() -> Pool<DB> + Send + Sync>,
}

impl<DB: Database> Pools<DB> {
    /// `open` makes a lazily connecting pool (it is called again on each replacement).
    pub(crate) fn new(open: impl Fn() -> Pool<DB> + Send + Sync + 'static) -> Arc<Pools<DB>> {
        let pool = open();
        Arc::new(Pools {
            current: RwLock::new(Generation { number: 0, pool }),
            open: Box::new(open),
        })
    }

    pub(crate) fn current(&self) -> Generation<DB> {
        // A poisoned lock held a complete `Generation` (the writer only assigns it).
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Replaces the pool of `generation` by a new one, unless that happened already (several
    /// calls on it may miss their deadlines at once). Returns whether it replaced it.
    pub(crate) fn retire(&self, generation: u64) -> bool {
        let old = {
            let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
            if current.number != generation {
                return false;
            }
            let next = Generation { number: generation + 1, pool: (self.open)() };
            std::mem::replace(&mut *current, next)
        };
        tokio::spawn(async move {
            // Waits for the connections still lent out, which end by their deadlines.
            let _ = tokio::time::timeout(CLOSE_RETIRED, old.pool.close()).await;
        });
        true
    }

    /// Closes the current pool, waiting for calls in progress to finish.
    pub(crate) async fn close(&self) {
        self.current().pool.close().await;
    }
}
