//! The thread a node's reports format their pages and assemble their files on, under Linux's
//! `SCHED_IDLE`: the kernel runs it only when no normal thread wants the CPU, and a waking
//! normal thread preempts it at once. One per node, so reports take one core at most together.
//!
//! Only pure CPU work comes here, never a store read: a read under `SCHED_IDLE` holds a SQLite
//! snapshot for as long as intake keeps the cores busy, the WAL cannot restart meanwhile, and
//! intake slows down behind a growing WAL — tried (docs/BENCHMARKS.md), WAL at 480 MB and
//! intake p99 at 900 ms within a minute.

use std::sync::mpsc;

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

/// Why work sent to the thread did not complete.
#[derive(Debug, thiserror::Error)]
#[error("a report's formatting panicked or its thread stopped (see the log above)")]
pub struct ThreadGone;

/// Hands CPU work to the thread and waits for it.
pub struct IdleThread {
    jobs: mpsc::Sender<Job>,
}

impl IdleThread {
    /// Starts the thread `name`; `idle` puts it under `SCHED_IDLE` (`reports.idle_priority`).
    /// Where the system refuses that, it runs at normal priority and the log says so.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start(name: &str, idle: bool) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = name.to_owned();
        std::thread::Builder::new().name(name.to_owned()).spawn(move || {
            if idle {
                lower_priority(&thread);
            }
            // Ends when the service (the sender) is dropped. A panic (a bug in a formatter)
            // fails its own report, whose reply is dropped, not the thread.
            while let Ok(job) = queue.recv() {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            }
        })?;
        Ok(IdleThread { jobs })
    }

    /// Runs `work` on the thread and waits for its result.
    ///
    /// # Errors
    /// [`ThreadGone`] if `work` panicked or the thread is gone.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ThreadGone> {
        let (reply, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            // The waiting run may have been dropped (shutdown): nothing to tell then.
            let _ = reply.send(work());
        });
        self.jobs.send(job).map_err(|_| ThreadGone)?;
        result.await.map_err(|_| ThreadGone)
    }
}

#[cfg(target_os = "linux")]
fn lower_priority(thread: &str) {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    match set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle) {
        Ok(()) => tracing::debug!(thread, "Thread runs under SCHED_IDLE."),
        Err(error) => tracing::warn!(
            thread,
            error = ?error,
            "Could not put the report thread under SCHED_IDLE; reports run at normal priority and may slow intake."
        ),
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority(thread: &str) {
    tracing::info!(thread, "SCHED_IDLE is Linux only; the report thread runs at normal priority.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn runs_work_on_its_own_thread_and_returns_the_result() {
        let thread = IdleThread::start("om-test", false).expect("a thread starts in tests");
        let name = thread.run(|| std::thread::current().name().map(str::to_owned)).await;
        assert_eq!(name.expect("thread alive").as_deref(), Some("om-test"));
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn an_idle_thread_is_under_sched_idle_and_the_caller_is_not() {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadSchedulePolicy};
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        let thread = IdleThread::start("om-test", true).expect("a thread starts in tests");
        let policy = thread.run(thread_priority::thread_schedule_policy).await;
        assert_eq!(policy.expect("thread alive").expect("policy readable"), idle);
        assert_ne!(thread_priority::thread_schedule_policy().expect("policy readable"), idle);
        let normal = IdleThread::start("om-test", false).expect("a thread starts in tests");
        let policy = normal.run(thread_priority::thread_schedule_policy).await;
        assert_ne!(policy.expect("thread alive").expect("policy readable"), idle);
    }

    #[tokio::test]
    async fn a_panicking_job_fails_alone() {
        let thread = IdleThread::start("om-test", false).expect("a thread starts in tests");
        assert!(thread.run(|| -> u8 { panic!("a bug in a formatter") }).await.is_err());
        assert_eq!(thread.run(|| 1).await.expect("the thread outlives a panicking job"), 1);
    }
}
