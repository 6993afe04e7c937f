//! What can stop a benchmark run before it has a report.

/// Why `ordermill bench run` could not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A flag has a value the run cannot use; the message names the flag.
    #[error("{0}")]
    InvalidArgs(String),
    /// The target (or the reference) could not be reached at all.
    // The cause is part of the message, not a `#[source]`, so that the hint comes last,
    // where a reader of a one-line error looks for what to do.
    #[error("cannot connect to {target}: {cause}; {hint}")]
    Unreachable {
        /// The URL as given.
        target: String,
        /// The I/O error of the connect or the name lookup.
        cause: std::io::Error,
        /// What to start so that the address answers.
        hint: String,
    },
    /// A TCP connection opened but HTTP/1.1 could not be spoken over it.
    #[error("cannot start HTTP/1.1 with {target}")]
    Handshake {
        /// The URL as given.
        target: String,
        /// What hyper reported.
        #[source]
        source: hyper::Error,
    },
    /// Creating the catalog (`--setup`) failed; no load was sent.
    #[error("setting up the catalog on {target} failed: PUT /api/products/{sku} {problem}")]
    Setup {
        /// The URL as given.
        target: String,
        /// The SKU whose `PUT` failed.
        sku: String,
        /// The status and start of the body, or the transport error.
        problem: String,
    },
    /// Opening the deals of `--deals` failed; no load was sent.
    #[error("opening deals on {target} failed: POST /api/deals {problem}")]
    DealSetup {
        /// The URL as given.
        target: String,
        /// The status and start of the body, or the transport error.
        problem: String,
    },
    /// Ctrl-C came during the catalog set-up, before any load was sent.
    #[error("interrupted during the catalog set-up; no load was sent")]
    Interrupted,
    /// A load task ended without its tally: a bug in the generator, not in the target.
    #[error("a load connection task failed")]
    Worker(#[source] tokio::task::JoinError),
    /// The HTTP client that reads orders back (`--e2e`) could not be built.
    #[error("cannot build the HTTP client that polls orders")]
    HttpClient(#[source] reqwest::Error),
    /// The JSON report could not be written.
    #[error("cannot write the JSON report to {path}")]
    WriteJson {
        /// Where it was to be written.
        path: std::path::PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}
