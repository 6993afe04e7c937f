//! Log set-up: text for people, JSON for shippers; filter in `RUST_LOG` syntax. Colours only on
//! a terminal (and never with `NO_COLOR`), so a log file or journal greps clean.
//!
//! Lines are written by a thread of their own, never by the threads that answer requests: a
//! stdout that stops draining (a stalled log shipper, a paused terminal, a full pipe) would
//! otherwise block every thread that logs, and with them all intake. When the sink falls
//! behind by more than [`BUFFERED_LINES`], lines are dropped instead — counted in
//! `ordermill_log_lines_dropped_total` and reported in a warning once the sink drains again:
//! sales go on without their log lines rather than stop for them.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use ordermill_server::LogFormat;
use tracing_appender::non_blocking::{ErrorCounter, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

/// Lines held for a slow sink before new ones are dropped (about 32 MiB of typical lines).
const BUFFERED_LINES: usize = 128 * 1024;
/// How often dropped lines are counted into the metric and reported.
const DROP_CHECK: Duration = Duration::from_secs(1);

/// Keeps the writer thread flushing until [`finish`].
static WRITER: Mutex<Option<WorkerGuard>> = Mutex::new(None);

/// Installs the global subscriber. `RUST_LOG`, when set, wins over the configured filter.
pub fn init(format: LogFormat, filter: &str) -> anyhow::Result<()> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(from_env) if !from_env.is_empty() => EnvFilter::try_new(from_env)?,
        _ => EnvFilter::try_new(filter)?,
    };
    let colour = std::io::stdout().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    // Buffered: the writer thread writes what queued while it was busy in one call, and flushes
    // whenever the queue is empty, so a line is out as soon as the thread is free.
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFERED_LINES)
        .thread_name("log-writer")
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout()));
    let dropped = writer.error_counter();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(colour)
        .with_writer(writer);
    let installed = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    installed.map_err(|e| anyhow::anyhow!("cannot install the logger: {e}"))?;
    *WRITER.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(guard);
    std::thread::Builder::new()
        .name("log-drops".into())
        .spawn(move || watch_drops(&dropped))
        .map_err(|e| anyhow::anyhow!("cannot start the log-drop counter: {e}"))?;
    Ok(())
}

/// Writes out the lines still queued (waiting at most a second for a stalled sink).
pub fn finish() {
    drop(WRITER.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take());
}

fn watch_drops(dropped: &ErrorCounter) {
    let mut reported = 0;
    loop {
        std::thread::sleep(DROP_CHECK);
        let total = dropped.dropped_lines();
        ordermill_server::telemetry::log_lines_dropped(total as u64);
        if total > reported {
            tracing::warn!(
                dropped = total - reported,
                total,
                "Log lines were dropped: stdout did not take them as fast as they came (a stalled or slow log reader). Orders were not affected."
            );
            reported = total;
        }
    }
}
