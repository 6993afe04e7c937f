//! The command line: one subcommand per job, each with help that teaches.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ordermill_server::{Application, LogFormat, Role};

use crate::config::{self, Overrides};

/// ordermill — asynchronous order processing: durable intake in about a millisecond, hot-stock
/// reservation that never oversells, group commit to an embedded database.
///
/// One process on embedded storage: `ordermill serve`. Scaled out: `ordermill migrate` once,
/// then `ordermill api` ×N behind a load balancer and `ordermill worker` ×M, all with
/// --store postgres://... (or mysql://...) --bus amqp://... --cache redis://...
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
    Serve(NodeArgs),
    /// Run the HTTP side of a scaled-out deployment: intake, group commit, the outbox relay
    /// and the deal scheduler. Run several behind a load balancer; consumers run in
    /// `ordermill worker`. Needs --store postgres://... or mysql://... and --bus amqp://... (and --cache
    /// redis://... so every node sells from one stock count).
    ///
    /// Example: ordermill api --listen 0.0.0.0:8080 --store postgres://app@db/orders
    /// --bus amqp://app:secret@mq:5672/%2f --cache redis://cache:6379
    Api(ApiArgs),
    /// Run consumers only (inventory, payment, notify or a subset) for a scaled-out
    /// deployment; no HTTP. Start as many as the backlog needs.
    ///
    /// Example: ordermill worker --queues payment,notify --store postgres://app@db/orders
    /// --bus amqp://app:secret@mq:5672/%2f --cache redis://cache:6379
    Worker(WorkerArgs),
    /// Create or upgrade the shared database's schema (--store postgres://... or
    /// mysql://...), then exit. Safe to run from several machines at once and again after an
    /// upgrade; the SQLite store upgrades itself when it opens.
    ///
    /// Example: ordermill migrate --store postgres://app@db/orders
    /// Example: ordermill migrate --store mysql://app:secret@db:3306/orders
    Migrate(MigrateArgs),
    /// Keep the shared database's partitions in shape, then exit: create the coming week's
    /// daily partitions of orders and processed_events, drop processed_events days older than
    /// postgres.processed_retention (mysql.processed_retention; 30 days by default). api nodes
    /// do the same every postgres.maintenance_interval (mysql.maintenance_interval); this is for
    /// a cron job or a one-off check.
    ///
    /// Example: ordermill maintain --store postgres://app@db/orders
    Maintain(MigrateArgs),
    /// Print the effective configuration (file + environment + flags) as TOML and exit, with
    /// passwords and tokens masked. deploy/ordermill.toml explains every key.
    Config(NodeArgs),
    /// List, replay or purge a queue's dead letters in a STOPPED node's data dir. For a
    /// running node use the admin API (GET/POST/DELETE /admin/dlq/{queue}).
    ///
    /// Example: ordermill dlq list --queue payment --data-dir ./data
    Dlq(DlqArgs),
    /// Benchmark tools. `bench run` sends order load and prints throughput and latency;
    /// `bench ceiling` runs the reference server that ordermill's throughput is compared with;
    /// `bench stubs` runs slow downstream services; `bench compare` measures the synchronous
    /// design against ordermill, under load and through a payment outage.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Summarise a running deployment from what its nodes serve: which nodes are ready (and
    /// why not), orders per second and in all, accepted→confirmed latency, queue depths and
    /// dead letters, and where the time went over the interval (each stage's runs per second
    /// and mean: reserve, commit, each consumer's effects, …). Exits 1 when a node is not
    /// ready.
    ///
    /// Example: ordermill status --url http://10.0.0.1:8080 --url http://10.0.0.2:8080
    /// --url http://10.0.0.3:9101 --watch
    Status(StatusArgs),
    /// Find and cancel orders on a running node through its admin API: orders stuck in
    /// `accepted` (a payment that was dead-lettered and purged), money owed back
    /// (`refund_required`).
    ///
    /// Example: ordermill orders list --url http://127.0.0.1:8080 --status accepted
    /// --older-than 10m; ordermill orders cancel 01a2...  --url http://127.0.0.1:8080
    #[command(subcommand)]
    Orders(OrdersCommand),
    /// Reports (报表): ask for one, watch it, download it, with a merchant token. They run on
    /// the node's consumer of the `reports` queue, off the request path.
    ///
    /// Example: ordermill report create --kind sales_by_sku --from 2026-11-01T00:00:00Z --to
    /// 2026-12-01T00:00:00Z --format xlsx --wait .
    #[command(subcommand)]
    Report(ReportCommand),
}

/// Where the reports API is, and the token for it.
#[derive(Debug, Args)]
struct ReportApi {
    /// The base URL of an api node or of `serve`.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A merchant token (one of the node's `auth.merchant_tokens`), or the admin token.
    #[arg(long, value_name = "TOKEN", env = "ORDERMILL_MERCHANT_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Debug, Subcommand)]
enum ReportCommand {
    /// Ask for a report; with --wait, show its progress and download it when done.
    ///
    /// Example: ordermill report create --kind orders --from 2026-11-01T00:00:00Z --to
    /// 2026-11-02T00:00:00Z --status confirmed --wait ./reports
    Create {
        #[command(flatten)]
        api: ReportApi,
        /// sales_by_sku (confirmed orders' lines per SKU), orders (one row per order), deals
        /// (one row per group-buy deal) or payments (what became of each order's money).
        #[arg(long)]
        kind: String,
        /// Orders created at or after this instant (RFC 3339).
        #[arg(long, value_name = "TIME")]
        from: String,
        /// Orders created before this instant (RFC 3339); at most 400 days after --from.
        #[arg(long, value_name = "TIME")]
        to: String,
        /// csv or xlsx.
        #[arg(long, default_value = "csv")]
        format: String,
        /// orders and payments only: one order status (accepted, confirmed, cancelled,
        /// awaiting_payment, ...).
        #[arg(long)]
        status: Option<String>,
        /// Only orders holding this SKU.
        #[arg(long)]
        sku: Option<String>,
        /// Wait with a progress bar, then download into this directory.
        #[arg(long, value_name = "DIR")]
        wait: Option<std::path::PathBuf>,
    },
    /// Show a report's status and progress.
    ///
    /// Example: ordermill report status 01a2...
    Status {
        /// The report's id.
        report_id: String,
        #[command(flatten)]
        api: ReportApi,
        /// Print the JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Download a done report into a directory (the file keeps the name the node gives it).
    ///
    /// Example: ordermill report download 01a2... --into ./reports
    Download {
        /// The report's id.
        report_id: String,
        #[command(flatten)]
        api: ReportApi,
        /// Where to save it.
        #[arg(long, value_name = "DIR", default_value = ".")]
        into: std::path::PathBuf,
    },
}

/// Where the admin API is.
#[derive(Debug, Args)]
struct AdminApi {
    /// The base URL of an api node or of `serve`.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The admin token (`admin_token` of the node).
    #[arg(long, value_name = "TOKEN", env = "ORDERMILL_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: String,
}

#[derive(Debug, Subcommand)]
enum OrdersCommand {
    /// List orders of one status created within a window, newest first.
    ///
    /// Example: ordermill orders list --status accepted --older-than 10m
    List {
        #[command(flatten)]
        api: AdminApi,
        /// awaiting_group, accepted, awaiting_payment, confirmed, cancelled or refund_required.
        #[arg(long, default_value = "accepted")]
        status: String,
        /// Only orders at least this old.
        #[arg(long, value_name = "TIME", default_value = "0s")]
        older_than: String,
        /// Only orders at most this old (the node scans this window; narrower is faster).
        #[arg(long, value_name = "TIME", default_value = "7days")]
        within: String,
        /// At most this many (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print the JSON page, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Cancel an unpaid order that waits (accepted or awaiting payment): its stock goes back
    /// on sale and its customer is told. A confirmed order is refused (refund it through the
    /// payment provider).
    ///
    /// Example: ordermill orders cancel 01a23102-21e1-7497-90f7-8f134a524198 --reason "payment
    /// dead-lettered"
    Cancel {
        /// The order's id.
        order_id: String,
        #[command(flatten)]
        api: AdminApi,
        /// Why (carried by the order.cancelled event).
        #[arg(long)]
        reason: Option<String>,
    },
}

/// `status`: where to look and how to show it.
#[derive(Debug, Args)]
struct StatusArgs {
    /// A node's base URL: an api node's or `serve`'s --listen, a worker's --metrics-listen.
    /// Repeat it for each node (several api nodes' counters add up).
    #[arg(long = "url", value_name = "URL", required = true)]
    urls: Vec<String>,
    /// The admin token, to add each queue's in-flight and delayed counts (/admin/queues).
    #[arg(long, value_name = "TOKEN", env = "ORDERMILL_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// Rates are measured over this long; with --watch, the refresh interval.
    #[arg(long, value_name = "TIME", default_value = "1s", value_parser = humantime::parse_duration)]
    every: std::time::Duration,
    /// Refresh until Ctrl-C.
    #[arg(long)]
    watch: bool,
    /// Print JSON (one document per refresh), for scripts.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum BenchCommand {
    /// Send order load over keep-alive HTTP/1.1 connections and print requests by status,
    /// throughput and latency percentiles (closed loop, or open loop at --rate).
    ///
    /// Example: ordermill bench run --target http://127.0.0.1:8080 --connections 64
    /// --duration 30s --setup --e2e --json report.json --reference http://127.0.0.1:8081
    Run(Box<ordermill_bench::RunArgs>),
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
    ///
    /// Over TLS, with a broker whose certificate a private CA signed: --amqp
    /// amqps://ordermill:PASSWORD@mq.internal:5671/%2f --ca-file /etc/ordermill/mq-ca.pem
    BrokerCeiling(ordermill_bench::broker_ceiling::BrokerCeilingArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DlqCommand {
    List,
    Replay,
    Purge,
}

/// `--config`, which every command that reads the configuration takes.
#[derive(Debug, Args)]
struct ConfigFlag {
    /// Configuration file (default: ordermill.toml in the current directory, if present).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// The engines: which store, bus and cache.
#[derive(Debug, Args)]
struct EngineFlags {
    /// Order store: sqlite (embedded in --data-dir, default), a postgres:// or a mysql:// URL (over TLS: ?sslmode=verify-full&sslrootcert=CA.pem, or ?ssl-mode=VERIFY_IDENTITY&ssl-ca=CA.pem for MySQL; plaintext without).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Message bus: embedded (default) or an amqp:// URL (RabbitMQ; amqps:// for TLS, rabbitmq.ca_file for a private CA).
    #[arg(long, value_name = "URL")]
    bus: Option<String>,
    /// Hot-stock cache: local (in-process, default) or a redis:// URL shared by nodes (rediss:// for TLS; redis.ca_file for a private CA).
    #[arg(long, value_name = "URL")]
    cache: Option<String>,
}

/// `--log-format`, for commands that log.
#[derive(Debug, Args)]
struct LogFlag {
    /// Log format: text for people, json for log shippers.
    #[arg(long, value_name = "FORMAT", value_parser = parse_log_format)]
    log_format: Option<LogFormat>,
}

/// What every node command takes: the config file, the engines and the log format.
#[derive(Debug, Args)]
struct NodeFlags {
    #[command(flatten)]
    config: ConfigFlag,
    #[command(flatten)]
    engines: EngineFlags,
    #[command(flatten)]
    log: LogFlag,
}

/// `serve` (and `config`, which shows what any node would run with).
#[derive(Debug, Args)]
struct NodeArgs {
    /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Directory for the embedded database (default ./data; created if missing).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Listen beyond loopback although anyone may act as anyone (customer mode `open`, or no
    /// merchant token). Refused without it (protected mode); for a trusted network only.
    #[arg(long)]
    insecure_open: bool,
    #[command(flatten)]
    node: NodeFlags,
}

/// `api`: an HTTP node on shared engines (no data dir of its own).
#[derive(Debug, Args)]
struct ApiArgs {
    /// Address to listen on (default 127.0.0.1:8080; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Listen beyond loopback although anyone may act as anyone (customer mode `open`, or no
    /// merchant token). Refused without it (protected mode); for a trusted network only.
    #[arg(long)]
    insecure_open: bool,
    #[command(flatten)]
    node: NodeFlags,
}

/// `worker`: consumers on shared engines (no HTTP, no data dir).
#[derive(Debug, Args)]
struct WorkerArgs {
    /// Queues to consume, comma-separated (default: every queue of the topology).
    #[arg(long, value_delimiter = ',', value_name = "QUEUES")]
    queues: Vec<String>,
    /// Serve /metrics (per-stage timings, per queue) and /healthz on ADDR, e.g.
    /// 127.0.0.1:9101 (workers.metrics_listen). A worker has no other listener.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    #[command(flatten)]
    node: NodeFlags,
}

/// `migrate` and `maintain`: only the store matters.
#[derive(Debug, Args)]
struct MigrateArgs {
    /// The store: a postgres:// or mysql:// URL (sqlite upgrades itself when opened and has no
    /// partitions).
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Directory of the embedded database, when the store is sqlite.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    #[command(flatten)]
    config: ConfigFlag,
}

impl MigrateArgs {
    /// The settings these flags, the config file and the environment make, with logging on.
    fn settings(self) -> anyhow::Result<ordermill_server::Settings> {
        let flags = Overrides {
            config: self.config.config,
            store: self.store,
            data_dir: self.data_dir,
            ..Overrides::default()
        };
        let settings = config::load(&flags)?;
        crate::logging::init(settings.log_format, &settings.log_filter)?;
        Ok(settings)
    }
}

/// `dlq`: a queue's dead letters, on the store and bus that hold them.
#[derive(Debug, Args)]
struct DlqArgs {
    /// list: show them; replay: send them back with a fresh attempt count (delivered when
    /// the node starts); purge: drop them.
    #[arg(value_enum)]
    action: DlqCommand,
    /// The queue: inventory, payment or notify (or one of your topology's).
    #[arg(long)]
    queue: String,
    /// list: how many to show (at most 1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    limit: u16,
    /// list: how many of the oldest to skip, to page on.
    #[arg(long, default_value_t = 0)]
    offset: usize,
    /// replay / purge: only the dead letter of this event (its id as `list` shows it), e.g.
    /// after fixing one order's cause; without it, every dead letter of the queue.
    #[arg(long, value_name = "UUID")]
    event_id: Option<uuid::Uuid>,
    /// Directory of the embedded database (default ./data).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Order store: sqlite (default), a postgres:// or a mysql:// URL.
    #[arg(long, value_name = "URL")]
    store: Option<String>,
    /// Message bus: embedded (default) or an amqp:// URL, whose dead queues are used live.
    #[arg(long, value_name = "URL")]
    bus: Option<String>,
    #[command(flatten)]
    config: ConfigFlag,
}

impl NodeFlags {
    fn overrides(self) -> Overrides {
        Overrides {
            config: self.config.config,
            store: self.engines.store,
            bus: self.engines.bus,
            cache: self.engines.cache,
            log_format: self.log.log_format,
            ..Overrides::default()
        }
    }
}

impl NodeArgs {
    fn overrides(self) -> Overrides {
        Overrides {
            listen: self.listen,
            data_dir: self.data_dir,
            insecure_open: self.insecure_open,
            ..self.node.overrides()
        }
    }
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("unknown log format {other:?}; use text or json")),
    }
}

/// Parses the command line, runs the chosen command, and maps its outcome to the exit code:
/// the one place an error is printed.
pub fn run() -> ExitCode {
    let outcome = dispatch(Cli::parse().command);
    crate::logging::finish();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ordermill: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => serve(args.overrides(), Role::All),
        Command::Api(args) => serve(
            Overrides {
                listen: args.listen,
                insecure_open: args.insecure_open,
                ..args.node.overrides()
            },
            Role::Api,
        ),
        Command::Worker(args) => serve(
            Overrides { metrics_listen: args.metrics_listen, ..args.node.overrides() },
            Role::Worker { queues: args.queues },
        ),
        Command::Migrate(args) => {
            let settings = args.settings()?;
            let migrated = runtime()?.block_on(ordermill_server::startup::tools::migrate(
                &settings,
                shutdown_signal(),
            ))?;
            if let Some(report) = migrated {
                println!("{report}");
            }
            Ok(())
        }
        Command::Maintain(args) => {
            let settings = args.settings()?;
            let report =
                runtime()?.block_on(ordermill_server::startup::tools::maintain(&settings))?;
            println!("{report}");
            Ok(())
        }
        Command::Dlq(args) => dlq(args),
        Command::Status(args) => {
            let request = crate::status::StatusRequest {
                urls: args.urls,
                admin_token: args.admin_token,
                every: args.every,
                json: args.json,
                watch: args.watch,
            };
            if runtime()?.block_on(crate::status::run(request))? {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Command::Orders(OrdersCommand::List { api, status, older_than, within, limit, json }) => {
            let request = crate::orders::ListRequest {
                url: api.url,
                admin_token: api.admin_token,
                status,
                older_than,
                within,
                limit,
                json,
            };
            runtime()?.block_on(crate::orders::list(request))
        }
        Command::Orders(OrdersCommand::Cancel { order_id, api, reason }) => runtime()?
            .block_on(crate::orders::cancel(&api.url, &api.admin_token, &order_id, reason)),
        Command::Report(command) => runtime()?.block_on(report(command)),
        Command::Config(args) => {
            print!("{}", config::to_toml(&config::load(&args.overrides())?)?);
            Ok(())
        }
        Command::Bench(BenchCommand::Run(args)) => {
            // No logger: stdout carries the report, progress notes go to stderr.
            let json = args.json.clone();
            let report = runtime()?.block_on(ordermill_bench::run(*args))?;
            print_report(&report, json, |path| Ok(report.write_json(path)?))
        }
        Command::Bench(BenchCommand::Ceiling { listen }) => {
            crate::logging::init(LogFormat::Text, "info")?;
            runtime()?
                .block_on(ordermill_bench::ceiling::serve(listen, shutdown_signal()))
                .with_context(|| format!("ceiling server on {listen} failed"))
        }
        Command::Bench(BenchCommand::Stubs(args)) => {
            crate::logging::init(LogFormat::Text, "info")?;
            let listen = args.listen;
            runtime()?
                .block_on(ordermill_bench::stubs::serve(listen, args.config, shutdown_signal()))
                .with_context(|| format!("stub server on {listen} failed"))
        }
        Command::Bench(BenchCommand::Compare(args)) => {
            let json = args.json.clone();
            // The comparison starts this very binary as `ordermill serve`, so both sides of
            // the table come from one build.
            let exe = std::env::current_exe().context("cannot find the ordermill executable")?;
            let report = runtime()?.block_on(ordermill_bench::compare::run(args, exe))?;
            print_report(&report, json, |path| Ok(report.write_json(path)?))
        }
        Command::Bench(BenchCommand::BrokerCeiling(args)) => {
            let json = args.json.clone();
            let report = runtime()?.block_on(ordermill_bench::broker_ceiling::run(args))?;
            print_report(&report, json, |path| Ok(report.write_json(path)?))
        }
    }
}

/// Prints a bench report to stdout and, when asked, writes it as JSON too.
fn print_report(
    report: &impl std::fmt::Display,
    json: Option<PathBuf>,
    write_json: impl FnOnce(&std::path::Path) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    print!("{report}");
    if let Some(path) = json {
        write_json(&path)
            .with_context(|| format!("cannot write the JSON report to {}", path.display()))?;
        println!("report        written to {}", path.display());
    }
    Ok(())
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    node_runtime(0)
}

/// `worker_threads` 0 leaves tokio's default: one per core, or `TOKIO_WORKER_THREADS`.
fn node_runtime(worker_threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    builder.enable_all().build().context("cannot start the async runtime")
}

fn dlq(args: DlqArgs) -> anyhow::Result<()> {
    use ordermill_server::startup::tools::{self, DlqAction, DlqOutcome};
    let action = match args.action {
        DlqCommand::List => DlqAction::List(tools::DeadLetterPage {
            offset: args.offset,
            limit: usize::from(args.limit),
        }),
        DlqCommand::Replay => DlqAction::Replay(args.event_id.into()),
        DlqCommand::Purge => DlqAction::Purge(args.event_id.into()),
    };
    if args.event_id.is_some() && matches!(action, DlqAction::List(_)) {
        anyhow::bail!("--event-id picks the dead letter to replay or purge; `list` shows them all");
    }
    let flags = Overrides {
        config: args.config.config,
        data_dir: args.data_dir,
        store: args.store,
        bus: args.bus,
        ..Overrides::default()
    };
    let settings = config::load(&flags)?;
    let queue = &args.queue;
    match runtime()?.block_on(tools::dlq(&settings, queue, action))? {
        DlqOutcome::Listed { letters, total } => {
            let (from, shown) = (args.offset, letters.len());
            if shown == 0 {
                println!("{total} dead letter(s) in {queue}; none from number {}", from + 1);
            } else {
                println!(
                    "{total} dead letter(s) in {queue}; numbers {} to {} (oldest first)",
                    from + 1,
                    from + shown
                );
            }
            for d in letters {
                println!(
                    "{}  {}  order={}  attempts={}  died_at={}  error={}",
                    d.envelope.event_id,
                    d.envelope.routing_key,
                    d.order_id().as_deref().unwrap_or("-"),
                    d.attempts,
                    d.died_at,
                    d.error
                );
            }
        }
        DlqOutcome::Replayed { count: 0, .. } | DlqOutcome::Purged(0)
            if args.event_id.is_some() =>
        {
            anyhow::bail!(
                "no dead letter of event {} in {queue}; `ordermill dlq list --queue {queue}` shows them",
                args.event_id.map(|id| id.to_string()).unwrap_or_default()
            );
        }
        DlqOutcome::Replayed { count, live } => {
            let when = if live {
                "they are back on the queue and running workers take them now"
            } else {
                "they are delivered when the node starts"
            };
            println!("replayed {count} dead letter(s) of {queue}; {when}");
        }
        DlqOutcome::Purged(n) => println!("purged {n} dead letter(s) of {queue}"),
    }
    Ok(())
}

fn serve(flags: Overrides, role: Role) -> anyhow::Result<()> {
    let settings = config::load(&flags)?;
    crate::logging::init(settings.log_format, &settings.log_filter)?;
    let outcome = node_runtime(settings.runtime.worker_threads)?.block_on(async {
        // Engines still starting (or restarting) are waited for; a stop meanwhile is clean.
        let Some(app) = Application::build_when_ready(settings, role, shutdown_signal()).await?
        else {
            return anyhow::Ok(());
        };
        app.run_until_stopped(shutdown_signal()).await?;
        anyhow::Ok(())
    });
    match &outcome {
        Ok(()) => tracing::info!("ordermill stopped cleanly."),
        Err(error) => tracing::error!(error = %format!("{error:#}"), "ordermill failed."),
    }
    outcome
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

async fn report(command: ReportCommand) -> anyhow::Result<()> {
    use crate::report::{Api, CreateRequest};
    match command {
        ReportCommand::Create { api, kind, from, to, format, status, sku, wait } => {
            let request = CreateRequest { kind, from, to, format, status, sku, wait_into: wait };
            crate::report::create(&Api { url: api.url, token: api.token }, request).await
        }
        ReportCommand::Status { report_id, api, json } => {
            crate::report::status(&Api { url: api.url, token: api.token }, &report_id, json).await
        }
        ReportCommand::Download { report_id, api, into } => {
            crate::report::download(&Api { url: api.url, token: api.token }, &report_id, &into)
                .await
        }
    }
}
