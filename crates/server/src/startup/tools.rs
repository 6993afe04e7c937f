//! Maintenance from the command line: `ordermill dlq ...` and `ordermill migrate`.
//!
//! On the embedded engines `dlq` works on a STOPPED node's data dir (a change reaches a
//! running node only when it restarts; use the admin API on a running one). On RabbitMQ it
//! works on the broker's dead queues directly, running nodes or not.

use std::sync::Arc;

use ordermill_core::SystemClock;
use ordermill_core::ports::DeadLetter;
pub use ordermill_core::ports::{DeadLetterPage, DeadLetterSelection};
use ordermill_store::SqliteStore;

use crate::startup::backends;
use crate::startup::settings::{BusUrl, Settings, StoreUrl};
use crate::startup::sql_store::SqlStore;

/// What to do with a queue's dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlqAction {
    /// Show one page of them.
    List(DeadLetterPage),
    /// Send them (all, or one event's) back to their queue with a fresh attempt count.
    Replay(DeadLetterSelection),
    /// Drop them (all, or one event's).
    Purge(DeadLetterSelection),
}

/// The outcome of a [`dlq`] call.
#[derive(Debug)]
pub enum DlqOutcome {
    /// One page of the dead letters, oldest first, and how many there are in all.
    Listed {
        /// The page.
        letters: Vec<DeadLetter>,
        /// Dead letters in the queue.
        total: u64,
    },
    /// How many were sent back: on the embedded bus they are delivered when the node next
    /// starts; on RabbitMQ they are back on the work queue now.
    Replayed {
        /// How many.
        count: usize,
        /// Whether running consumers take them now (a broker) or the next start does.
        live: bool,
    },
    /// How many were dropped.
    Purged(usize),
}

/// Lists, replays or purges `queue`'s dead letters in the data dir of `settings`.
///
/// # Errors
/// When the store cannot be opened, the queue does not exist, or the change cannot be
/// recorded; the message says which.
pub async fn dlq(
    settings: &Settings,
    queue: &str,
    action: DlqAction,
) -> anyhow::Result<DlqOutcome> {
    let bus = backends::open(settings, Arc::new(SystemClock)).await?.bus;
    if !bus.queues().iter().any(|q| q == queue) {
        anyhow::bail!("no queue named {queue:?}; the queues are {}", bus.queues().join(", "));
    }
    Ok(match action {
        DlqAction::List(page) => {
            let letters = bus.dead_letters(queue, page).await?;
            let total = bus.dead_letter_total(queue).await?;
            DlqOutcome::Listed { letters, total }
        }
        DlqAction::Replay(which) => DlqOutcome::Replayed {
            count: bus.replay_dead_letters(queue, which).await?,
            live: !matches!(settings.bus, BusUrl::Embedded),
        },
        DlqAction::Purge(which) => DlqOutcome::Purged(bus.purge_dead_letters(queue, which).await?),
    })
}

/// Partition maintenance alone (`ordermill maintain`): creates the coming days' partitions
/// and drops `processed_events` partitions past `postgres.processed_retention`
/// (`mysql.processed_retention`). For a cron job or a one-off; api nodes also run it every
/// `postgres.maintenance_interval` (`mysql.maintenance_interval`).
///
/// # Errors
/// When the store is not a shared database, is not migrated, or fails.
pub async fn maintain(settings: &Settings) -> anyhow::Result<String> {
    let Some(url) = settings.store.shared() else {
        anyhow::bail!(
            "`ordermill maintain` keeps a shared database's partitions; the embedded SQLite store \
             has none, and `ordermill serve` deletes its consumers' records past \
             sqlite.processed_retention by itself (for a shared database give --store \
             postgres://... or --store mysql://...)"
        );
    };
    let store = SqlStore::open(settings, None).await?;
    let pending = store.pending_migrations().await?;
    if !pending.is_empty() {
        store.close().await;
        anyhow::bail!(
            "the schema at {url} lacks {}: run `ordermill migrate --store {url}` first",
            pending.join(", ")
        );
    }
    let done = store.maintain(settings).await;
    store.close().await;
    Ok(format!("{url}: partitions checked{}", maintenance_report(&done?, &store)))
}

fn maintenance_report(done: &ordermill_store::partitions::Maintenance, store: &SqlStore) -> String {
    let mut report = String::new();
    if !done.created.is_empty() {
        report.push_str(&format!("; created {}", done.created.join(", ")));
    }
    if !done.dropped.is_empty() {
        report.push_str(&format!(
            "; dropped (past {}) {}",
            store.retention_key(),
            done.dropped.join(", ")
        ));
    }
    report
}

/// Brings the store's schema up to date; returns a line for people, or `None` when `stop`
/// came first. A database that cannot be reached yet is waited for, with a log line per try.
///
/// # Errors
/// When a migration fails (nothing of that migration stays), or the store is misconfigured.
pub async fn migrate(
    settings: &Settings,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<Option<String>> {
    tokio::pin!(stop);
    match &settings.store {
        StoreUrl::Postgres(url) | StoreUrl::Mysql(url) => {
            let mut delay = std::time::Duration::from_millis(500);
            let store = loop {
                match SqlStore::open(settings, None).await {
                    Ok(store) => break store,
                    Err(error) if error.is_engine_unavailable() => {
                        tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "Waiting for the database to be reachable before migrating.");
                    }
                    Err(error) => return Err(error.into()),
                }
                tokio::select! {
                    () = &mut stop => return Ok(None),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(std::time::Duration::from_secs(15));
            };
            let applied = store.migrate().await?;
            let maintained = store.maintain(settings).await;
            store.close().await;
            let mut report = if applied.is_empty() {
                format!("{}: schema is up to date", url)
            } else {
                format!("{}: applied {}", url, applied.join(", "))
            };
            report.push_str(&maintenance_report(&maintained?, &store));
            Ok(Some(report))
        }
        StoreUrl::Sqlite => {
            let dir = settings.data_dir.clone();
            tokio::task::spawn_blocking(move || SqliteStore::open(&dir)).await??;
            Ok(Some(format!(
                "{}: SQLite schema is up to date (it upgrades itself when opened)",
                settings.data_dir.display()
            )))
        }
    }
}
