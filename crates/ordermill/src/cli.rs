//! The command line: one subcommand per job, each with help that teaches.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ordermill_server::{Application, LogFormat, Role};

use crate::config;

/// ordermill — asynchronous order processing: durable intake in about a millisecond, hot-stock
/// reservation that never oversells, group commit to an embedded database.
///
/// One process on embedded storage: `ordermill serve`. Scaled out: `ordermill migrate` once,
/// then `ordermill api` ×N behind a load balancer and `ordermill worker` ×M, all with
/// --store postgres://... --bus amqp://... --cache redis://...
///
/// Configuration is read from ordermill.toml (or --config), then ORDERMILL_* environment
/// variables (nested keys with "__", e.g. ORDERMILL_COMMIT__MAX_BATCH_ORDERS=2048), then flags.
#[derive(Debug, Parser)]
#[command(name = "ordermill", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything in one process on embedded storage (SQLite in --data-dir): the HTTP API,
    /// the hot-stock cache and the group committer. No external service needed.
    ///
    /// Example: ordermill serve --listen 127.0.0.1:8080 --data-dir ./data
    Serve(ServeArgs),
    /// Run the HTTP side of a scaled-out deployment: intake, group commit, the outbox relay
    /// and the deal scheduler. Run several behind a load balancer; consumers run in
    /// `ordermill worker`. Needs --store postgres://... and --bus amqp://... (and --cache
    /// redis://... so every node sells from one stock count).
    ///
    /// Example: ordermill api --listen 0.0.0.0:8080 --store postgres://app@db/orders
    /// --bus amqp://app:secret@mq:5672/%2f --cache redis://cache:6379
    Api(ServeArgs),
    /// Run consumers only (inventory, payment, notify or a subset) for a scaled-out
    /// deployment; no HTTP. Start as many as the backlog needs.
    ///
    /// Example: ordermill worker --queues payment,notify --store postgres://app@db/orders
    /// --bus amqp://app:secret@mq:5672/%2f --cache redis://cache:6379
    Worker {
        /// Queues to consume, comma-separated (default: every queue of the topology).
        #[arg(long, value_delimiter = ',', value_name = "QUEUES")]
        queues: Vec<String>,
        #[command(flatten)]
        node: ServeArgs,
    },
    /// Create or upgrade the PostgreSQL schema (--store postgres://...), then exit. Safe to run
    /// from several machines at once and again after an upgrade; the SQLite store upgrades
    /// itself when it opens.
    ///
    /// Example: ordermill migrate --store postgres://app@db/orders
    Migrate(ServeArgs),
    /// Print the effective configuration (file + environment + flags) as TOML and exit.
    Config(ServeArgs),
    /// List, replay or purge a queue's dead letters in a STOPPED node's data dir. For a
    /// running node use the admin API (GET/POST/DELETE /admin/dlq/{queue}).
    ///
    /// Example: ordermill dlq list --queue payment --data-dir ./data
    Dlq {
        /// list: show them; replay: send them back with a fresh attempt count (delivered when
        /// the node starts); purge: drop them.
        #[arg(value_enum)]
        action: DlqCommand,
        /// The queue: inventory, payment or notify (or one of your topology's).
        #[arg(long)]
        queue: String,
        #[command(flatten)]
        node: ServeArgs,
    },
    /// Benchmark tools. `bench run` sends order load and prints throughput and latency;
    /// `bench ceiling` runs the reference server that ordermill's throughput is compared with;
    /// `bench stubs` runs slow downstream services; `bench compare` measures the synchronous
    /// design against ordermill, under load and through a payment outage.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Send order load over keep-alive HTTP/1.1 connections and print requests by status,
    /// throughput and latency percentiles (closed loop, or open loop at --rate).
    ///
    /// Example: ordermill bench run --target http://127.0.0.1:8080 --connections 64
    /// --duration 30s --setup --e2e --json report.json --reference http://127.0.0.1:8081
    Run(ordermill_bench::RunArgs),
    /// Run a bare axum server that parses the same order JSON and answers 201 — the
    /// physical reference for this machine. Drive it and ordermill with the same load.
    ///
    /// Example: ordermill bench ceiling --listen 127.0.0.1:8081
    Ceiling {
        /// Address to listen on.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8081")]
        listen: SocketAddr,
    },
    /// Run stub downstream services on one port: POST /inventory, /payment and /notify, each
    /// answering 200 after its latency (payment 503 at --payment-fail-rate). POST
    /// /admin/down/{service} and /admin/up/{service} take one down (503 at once) and back;
    /// GET /admin/stats counts the answers.
    ///
    /// Example: ordermill bench stubs --listen 127.0.0.1:8090 --payment-latency 300ms
    Stubs(ordermill_bench::stubs::StubsArgs),
    /// Measure the synchronous design (inventory, payment and notify called one after another
    /// inside the request) against ordermill: same stubs, same load, then the same payment
    /// outage, and how long ordermill takes to catch up. Starts everything itself: the stubs
    /// and the baseline in this process, ordermill as a child on a temporary data dir.
    ///
    /// Example: ordermill bench compare --duration 20s --connections 64
    /// --inventory-latency 200ms --payment-latency 300ms --notify-latency 150ms
    Compare(ordermill_bench::compare::CompareArgs),
    /// Measure RabbitMQ's own rate for ordermill's topology: persistent publishes with
    /// confirms to a topic exchange fanned out to 3 durable queues, then consuming every copy
    /// with manual acks. The reference the scaled-out pipeline is compared with.
    ///
    /// Example: ordermill bench broker-ceiling --amqp amqp://guest:guest@127.0.0.1:5672/%2f
    /// --messages 50000
    BrokerCeiling(ordermill_bench::broker_ceiling::BrokerCeilingArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DlqCommand {
    List,
    Replay,
    Purge,
}

/// Flags shared by commands that run a node.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory for the embedded database (default ./data; created if missing).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file (default: ordermill.toml in the current directory, if present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Order store: sqlite (embedded in --data-dir, default) or a postgres:// URL.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Message bus: embedded (default) or an amqp:// URL (RabbitMQ).
    #[arg(long, value_name = "URL")]
    pub bus: Option<String>,
    /// Hot-stock cache: local (in-process, default) or a redis:// URL shared by nodes.
    #[arg(long, value_name = "URL")]
    pub cache: Option<String>,
    /// Log format: text for people, json for log shippers.
    #[arg(long, value_name = "FORMAT", value_parser = parse_log_format)]
    pub log_format: Option<LogFormat>,
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("unknown log format {other:?}; use text or json")),
    }
}

/// Parses the command line and runs the chosen command.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(args, Role::All),
        Command::Api(args) => serve(args, Role::Api),
        Command::Worker { queues, node } => serve(node, Role::Worker { queues }),
        Command::Migrate(args) => migrate(&args),
        Command::Dlq { action, queue, node } => dlq(action, &queue, &node),
        Command::Bench(BenchCommand::Run(args)) => bench_run(args),
        Command::Bench(BenchCommand::Ceiling { listen }) => ceiling(listen),
        Command::Bench(BenchCommand::Stubs(args)) => stubs(args),
        Command::Bench(BenchCommand::Compare(args)) => bench_compare(args),
        Command::Bench(BenchCommand::BrokerCeiling(args)) => broker_ceiling(args),
        Command::Config(args) => match config::load(&args).and_then(|s| config::to_toml(&s)) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(error) => fail(&error),
        },
    }
}

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("ordermill: {error:#}");
    ExitCode::FAILURE
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::Error::new(e).context("cannot start the async runtime"))
}

fn ceiling(listen: SocketAddr) -> ExitCode {
    if let Err(error) = crate::logging::init(LogFormat::Text, "info") {
        return fail(&error);
    }
    let outcome = runtime().and_then(|rt| {
        rt.block_on(ordermill_bench::ceiling::serve(listen, shutdown_signal())).map_err(|e| {
            anyhow::Error::new(e).context(format!("ceiling server on {listen} failed"))
        })
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

fn stubs(args: ordermill_bench::stubs::StubsArgs) -> ExitCode {
    if let Err(error) = crate::logging::init(LogFormat::Text, "info") {
        return fail(&error);
    }
    let listen = args.listen;
    let outcome = runtime().and_then(|rt| {
        rt.block_on(ordermill_bench::stubs::serve(listen, args.config, shutdown_signal()))
            .map_err(|e| anyhow::Error::new(e).context(format!("stub server on {listen} failed")))
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(&error),
    }
}

// Like `bench run`, no logger: stdout carries the report, progress notes go to stderr.
fn bench_compare(args: ordermill_bench::compare::CompareArgs) -> ExitCode {
    let json = args.json.clone();
    // The comparison starts this very binary as `ordermill serve`, so both sides of the table
    // come from one build.
    let outcome = std::env::current_exe()
        .map_err(|e| anyhow::Error::new(e).context("cannot find the ordermill executable"))
        .and_then(|exe| Ok(runtime()?.block_on(ordermill_bench::compare::run(args, exe))?));
    let report = match outcome {
        Ok(report) => report,
        Err(error) => return fail(&error),
    };
    print!("{report}");
    if let Some(path) = json {
        if let Err(error) = report.write_json(&path) {
            let context = format!("cannot write the JSON report to {}", path.display());
            return fail(&anyhow::Error::new(error).context(context));
        }
        println!("report        written to {}", path.display());
    }
    ExitCode::SUCCESS
}

// No logger is installed: stdout carries the summary, and what goes wrong is in the error or
// in the counts.
fn bench_run(args: ordermill_bench::RunArgs) -> ExitCode {
    let json = args.json.clone();
    let report = match runtime().and_then(|rt| Ok(rt.block_on(ordermill_bench::run(args))?)) {
        Ok(report) => report,
        Err(error) => return fail(&error),
    };
    print!("{report}");
    if let Some(path) = json {
        if let Err(error) = report.write_json(&path) {
            return fail(&error.into());
        }
        println!("report        written to {}", path.display());
    }
    ExitCode::SUCCESS
}

// Like `bench run`: stdout carries the report.
fn broker_ceiling(args: ordermill_bench::broker_ceiling::BrokerCeilingArgs) -> ExitCode {
    let json = args.json.clone();
    let outcome =
        runtime().and_then(|rt| Ok(rt.block_on(ordermill_bench::broker_ceiling::run(args))?));
    let report = match outcome {
        Ok(report) => report,
        Err(error) => return fail(&error),
    };
    print!("{report}");
    if let Some(path) = json {
        if let Err(error) = report.write_json(&path) {
            return fail(&error.into());
        }
        println!("report        written to {}", path.display());
    }
    ExitCode::SUCCESS
}

fn dlq(action: DlqCommand, queue: &str, node: &ServeArgs) -> ExitCode {
    use ordermill_server::offline::{self, DlqAction, DlqOutcome};
    let action = match action {
        DlqCommand::List => DlqAction::List,
        DlqCommand::Replay => DlqAction::Replay,
        DlqCommand::Purge => DlqAction::Purge,
    };
    let outcome = config::load(node)
        .and_then(|settings| runtime()?.block_on(offline::dlq(&settings, queue, action)));
    match outcome {
        Ok(DlqOutcome::Listed(letters)) => {
            println!("{} dead letter(s) in {queue}", letters.len());
            for d in letters {
                println!(
                    "{}  {}  attempts={}  died_at={}  error={}",
                    d.envelope.event_id, d.envelope.routing_key, d.attempts, d.died_at, d.error
                );
            }
            ExitCode::SUCCESS
        }
        Ok(DlqOutcome::Replayed { count, live }) => {
            let when = if live {
                "they are back on the queue and running workers take them now"
            } else {
                "they are delivered when the node starts"
            };
            println!("replayed {count} dead letter(s) of {queue}; {when}");
            ExitCode::SUCCESS
        }
        Ok(DlqOutcome::Purged(n)) => {
            println!("purged {n} dead letter(s) of {queue}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

fn migrate(args: &ServeArgs) -> ExitCode {
    let outcome = config::load(args)
        .and_then(|settings| runtime()?.block_on(ordermill_server::offline::migrate(&settings)));
    match outcome {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => fail(&error),
    }
}

fn serve(args: ServeArgs, role: Role) -> ExitCode {
    let settings = match config::load(&args) {
        Ok(settings) => settings,
        Err(error) => return fail(&error),
    };
    if let Err(error) = crate::logging::init(settings.log_format, &settings.log_filter) {
        return fail(&error);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            return fail(&anyhow::Error::new(error).context("cannot start the async runtime"));
        }
    };
    let outcome = runtime.block_on(async {
        let app = Application::build_role(settings, role).await?;
        app.run_until_stopped(shutdown_signal()).await?;
        anyhow::Ok(())
    });
    match outcome {
        Ok(()) => {
            tracing::info!("ordermill stopped cleanly.");
            ExitCode::SUCCESS
        }
        Err(error) => {
            tracing::error!(error = %format!("{error:#}"), "ordermill failed.");
            fail(&error)
        }
    }
}

/// Completes on ctrl-c or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %error, "Cannot listen for ctrl-c; stop with SIGTERM.");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(error = %error, "Cannot listen for SIGTERM; stop with ctrl-c.");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Received ctrl-c; shutting down gracefully."),
        () = terminate => tracing::info!("Received SIGTERM; shutting down gracefully."),
    }
}
