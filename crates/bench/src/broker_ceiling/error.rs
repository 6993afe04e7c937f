//! What can stop a broker-ceiling run before it has a report.

use std::path::PathBuf;

/// Why `ordermill bench broker-ceiling` could not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum BrokerCeilingError {
    /// A flag has a value the run cannot use; the message names the flag.
    #[error("{0}")]
    InvalidArgs(String),
    /// The broker could not be reached or refused the login.
    // The cause is part of the message, not a `#[source]`, so that the hint comes last,
    // where a reader of a one-line error looks for what to do.
    #[error("cannot connect to RabbitMQ at {url}: {cause}; {hint}")]
    Unreachable {
        /// The URL as given, without its password.
        url: String,
        /// What lapin reported.
        cause: lapin::Error,
        /// What to check, for the cause at hand.
        hint: &'static str,
    },
    /// The broker did not answer in time.
    #[error(
        "RabbitMQ at {url} did not {what} within {secs} s; is the broker overloaded or short of \
         disk or memory (see `rabbitmqctl status` and its alarms)?"
    )]
    Stalled {
        /// The URL as given, without its password.
        url: String,
        /// What it did not do, e.g. "confirm a publish".
        what: &'static str,
        /// How long the run waited.
        secs: u64,
    },
    /// An AMQP operation failed after the connection was up.
    #[error("RabbitMQ refused to {operation}: {cause}; check the broker's log for the reason")]
    Broker {
        /// What the run was doing, e.g. "declare the queue bench-ceiling-….inventory".
        operation: String,
        /// What lapin reported.
        cause: lapin::Error,
    },
    /// The broker nacked a publish: it could not store the message.
    #[error(
        "RabbitMQ nacked publish {message}: it could not store the message; check its disk and \
         memory alarms (`rabbitmqctl status`)"
    )]
    Nacked {
        /// The message number (its `message_id`).
        message: u64,
    },
    /// A publish reached no queue, although every queue is bound to its routing key.
    #[error(
        "RabbitMQ returned a publish as unroutable ({reply}): the bench's queues or bindings \
         are gone; did something delete bench-ceiling-* objects during the run?"
    )]
    Unroutable {
        /// The broker's reply text.
        reply: String,
    },
    /// A consumer ended before it had every message of its queue.
    #[error(
        "the consumer of {queue} stopped after {got} of {expected} messages; was the queue \
         deleted or the consumer cancelled during the run?"
    )]
    ConsumerEnded {
        /// The queue.
        queue: String,
        /// Distinct messages it had received.
        got: u64,
        /// Messages published.
        expected: u64,
    },
    /// Ctrl-C (or the caller's stop) came first; the topology was still deleted, or a
    /// warning was logged saying what is left.
    #[error(
        "interrupted before the measurement finished; the bench's exchange and queues were \
         deleted unless a warning says otherwise"
    )]
    Interrupted,
    /// Something the bench relies on did not hold: a bug in the bench, not in the broker.
    #[error("{0}; this is a bug in the bench")]
    Bug(&'static str),
    /// A publish or consume task ended without its tally: a bug in the bench.
    #[error("a broker-ceiling task failed")]
    Task(#[source] tokio::task::JoinError),
    /// The JSON report could not be written.
    #[error("cannot write the JSON report to {path}")]
    WriteJson {
        /// Where it was to be written.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl BrokerCeilingError {
    /// A failed AMQP `operation`.
    pub(crate) fn broker(operation: impl Into<String>, cause: lapin::Error) -> Self {
        BrokerCeilingError::Broker { operation: operation.into(), cause }
    }
}
