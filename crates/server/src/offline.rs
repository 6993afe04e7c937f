//! Maintenance of a stopped node's data dir from the command line (`ordermill dlq ...`).
//! For a running node use the admin API instead: a change made here reaches a running node
//! only when it restarts.

use std::sync::Arc;

use ordermill_bus::EmbeddedBus;
use ordermill_core::SystemClock;
use ordermill_core::ports::{DeadLetter, EventBus};
use ordermill_store::SqliteStore;

use crate::settings::Settings;

/// What to do with a queue's dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DlqAction {
    /// Show them.
    List,
    /// Send them back to their queue with a fresh attempt count.
    Replay,
    /// Drop them.
    Purge,
}

/// The outcome of a [`dlq`] call.
#[derive(Debug)]
pub enum DlqOutcome {
    /// The dead letters, oldest first.
    Listed(Vec<DeadLetter>),
    /// How many were sent back (delivered when the node next starts).
    Replayed(usize),
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
    let dir = settings.data_dir.clone();
    let store =
        tokio::task::spawn_blocking(move || SqliteStore::open(&dir)).await?.map_err(|e| {
            anyhow::anyhow!("cannot open the store in {}: {e}", settings.data_dir.display())
        })?;
    let bus = EmbeddedBus::start(settings.topology.clone(), Arc::new(store), Arc::new(SystemClock))
        .await?;
    if !bus.queues().iter().any(|q| q == queue) {
        anyhow::bail!("no queue named {queue:?}; the queues are {}", bus.queues().join(", "));
    }
    Ok(match action {
        DlqAction::List => DlqOutcome::Listed(bus.dead_letters(queue).await?),
        DlqAction::Replay => DlqOutcome::Replayed(bus.replay_dead_letters(queue).await?),
        DlqAction::Purge => DlqOutcome::Purged(bus.purge_dead_letters(queue).await?),
    })
}
