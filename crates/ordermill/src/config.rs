//! Layered configuration: defaults → ordermill.toml → ORDERMILL_* env → flags, read once into
//! the typed [`Settings`] and checked before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ordermill_server::{LogFormat, Settings};

const DEFAULT_FILE: &str = "ordermill.toml";

/// Keys earlier releases took, and what replaces each. Naming the new key is kinder than
/// "unknown field", and a silently ignored old key would be worse.
const RENAMED: &[(&str, &str)] = &[
    ("cache_prefix", "redis.key_prefix"),
    ("cache_node_ttl_ms", "redis.node_ttl"),
    ("catalog_refresh_ms", "catalog.refresh"),
    ("relay_sweep_ms", "rabbitmq.relay_sweep"),
    ("order_cache_entries", "order_cache.entries"),
    ("order_cache_ttl_ms", "order_cache.ttl"),
    ("idempotency_cache_entries", "idempotency.cache_entries"),
    ("rabbitmq.url", "bus"),
    ("rabbitmq.confirm_timeout_ms", "rabbitmq.confirm_timeout"),
    ("rabbitmq.connect_timeout_ms", "rabbitmq.connect_timeout"),
    ("rabbitmq.reconnect_min_ms", "rabbitmq.reconnect_min"),
    ("rabbitmq.reconnect_max_ms", "rabbitmq.reconnect_max"),
    ("rabbitmq.retry_tiers_ms", "rabbitmq.retry_tiers"),
    ("http.request_timeout_secs", "http.request_timeout"),
    ("workers.message_timeout_ms", "workers.message_timeout"),
    ("workers.retry_base_ms", "workers.retry_base"),
    ("workers.retry_max_ms", "workers.retry_max"),
    ("payment.latency_ms", "payment.latency"),
    ("payment.timeout_ms", "payment.timeout"),
    ("notify.timeout_ms", "notify.timeout"),
    ("deals.check_interval_ms", "deals.check_interval"),
];

/// What the command line may override; each subcommand fills in the flags it has.
#[derive(Debug, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub store: Option<String>,
    pub bus: Option<String>,
    pub cache: Option<String>,
    pub log_format: Option<LogFormat>,
    /// `--insecure-open`: listen beyond loopback without credentials anyway.
    pub insecure_open: bool,
    /// `ordermill worker --metrics-listen`.
    pub metrics_listen: Option<SocketAddr>,
}

/// Merges every layer into [`Settings`] and checks them.
///
/// # Errors
/// A missing config file, a renamed or unknown key, a value of the wrong type or out of range:
/// the message names the key and what to write instead.
pub fn load(flags: &Overrides) -> anyhow::Result<Settings> {
    let mut figment = Figment::from(Serialized::defaults(Settings::default()));
    match &flags.config {
        Some(path) => {
            anyhow::ensure!(path.exists(), "config file {} does not exist", path.display());
            figment = figment.merge(Toml::file_exact(path));
        }
        None if Path::new(DEFAULT_FILE).exists() => {
            figment = figment.merge(Toml::file_exact(DEFAULT_FILE))
        }
        None => {}
    }
    // ORDERMILL_TEST_* variables configure the test suite, not the service.
    // ORDERMILL_MERCHANT_TOKEN is the short name operators use for auth.merchant_tokens.
    let env = Env::prefixed("ORDERMILL_").split("__").filter(|key| {
        let key = key.as_str().to_ascii_lowercase();
        !key.starts_with("test_") && key != "merchant_token"
    });
    figment = figment.merge(env);
    if let Ok(tokens) = std::env::var("ORDERMILL_MERCHANT_TOKEN") {
        let tokens: Vec<String> =
            tokens.split(',').map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned).collect();
        figment = figment.merge(("auth.merchant_tokens", tokens));
    }
    let flag = |figment: Figment, key: &str, value: Option<String>| match value {
        Some(value) => figment.merge((key, value)),
        None => figment,
    };
    figment = flag(figment, "listen", flags.listen.map(|a| a.to_string()));
    figment = flag(figment, "data_dir", flags.data_dir.as_ref().map(|d| d.display().to_string()));
    figment = flag(figment, "store", flags.store.clone());
    figment = flag(figment, "bus", flags.bus.clone());
    figment = flag(figment, "cache", flags.cache.clone());
    figment = flag(figment, "workers.metrics_listen", flags.metrics_listen.map(|a| a.to_string()));
    if flags.insecure_open {
        figment = figment.merge(("auth.insecure_open", true));
    }
    if let Some(format) = flags.log_format {
        figment = figment.merge(("log_format", format));
    }
    check_renamed(&figment)?;
    let settings: Settings = figment
        .extract()
        .context("invalid configuration (check ordermill.toml, ORDERMILL_* variables and flags)")?;
    settings.validate().map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    Ok(settings)
}

fn check_renamed(figment: &Figment) -> anyhow::Result<()> {
    for (old, new) in RENAMED {
        if figment.find_value(old).is_ok() {
            let env = format!("ORDERMILL_{}", new.replace('.', "__").to_ascii_uppercase());
            let units = if old.ends_with("_ms") || old.ends_with("_secs") {
                " It takes a duration with its unit now, e.g. \"250ms\" or \"10s\"."
            } else {
                ""
            };
            anyhow::bail!(
                "the setting `{old}` was renamed: use `{new}` (env {env}).{units} See deploy/ordermill.toml for every key."
            );
        }
    }
    Ok(())
}

/// The settings as TOML, for `ordermill config`: passwords, tokens and URL query values are
/// masked by the settings' own types, since the output gets pasted into tickets and chats.
pub fn to_toml(settings: &Settings) -> anyhow::Result<String> {
    toml::to_string_pretty(settings).context("settings cannot be written as TOML")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_toml(text: &str) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir().expect("a temp dir");
        let path = dir.path().join("ordermill.toml");
        std::fs::write(&path, text).expect("write");
        load(&Overrides { config: Some(path), ..Overrides::default() })
    }

    #[test]
    fn an_old_key_is_refused_naming_the_new_one() {
        let err = load_toml("cache_prefix = \"shop\"").unwrap_err().to_string();
        assert!(
            err.contains("`redis.key_prefix`") && err.contains("ORDERMILL_REDIS__KEY_PREFIX"),
            "{err}"
        );
        let err = load_toml("[workers]\nmessage_timeout_ms = 5000").unwrap_err().to_string();
        assert!(err.contains("`workers.message_timeout`") && err.contains("\"10s\""), "{err}");
        let err = load_toml("[rabbitmq]\nurl = \"amqp://g:secret@h\"").unwrap_err().to_string();
        assert!(err.contains("use `bus`"), "{err}");
    }

    #[test]
    fn durations_take_units_and_engines_are_parsed_at_load() {
        let settings = load_toml(
            "store = \"postgres://app:pw@db/orders\"\nbus = \"amqp://g:pw@mq/%2f\"\n\
             [workers]\nmessage_timeout = \"3s\"\n[redis]\nnode_ttl = \"20s\"",
        )
        .unwrap();
        assert_eq!(settings.workers.message_timeout.as_millis_u64(), 3_000);
        assert_eq!(settings.redis.node_ttl.as_millis_u64(), 20_000);
        assert!(matches!(
            settings.store,
            ordermill_server::startup::settings::StoreUrl::Postgres(_)
        ));
        let err = load_toml("[workers]\nmessage_timeout = 3000").unwrap_err();
        assert!(format!("{err:#}").contains("\"3000ms\""), "{err:#}");
        let settings = load_toml("store = \"mysql://app:pw@db:3306/orders\"").unwrap();
        assert!(matches!(settings.store, ordermill_server::startup::settings::StoreUrl::Mysql(_)));
        let err = load_toml("store = \"oracle://h/db\"").unwrap_err();
        assert!(format!("{err:#}").contains("is not a store"), "{err:#}");
        let err = load_toml("[deals]\ncheck_interval = \"0s\"").unwrap_err().to_string();
        assert!(err.contains("deals.check_interval must be longer than zero"), "{err}");
    }

    #[test]
    fn config_output_masks_every_secret_and_reads_back() {
        let mut settings = load_toml(
            "store = \"postgres://app:pw1@db/orders\"\nbus = \"amqp://g:pw2@mq/%2f\"\n\
             cache = \"redis://:pw3@cache:6379\"\nadmin_token = \"tok\"\n\
             [payment]\ngateway = \"http\"\nurl = \"https://pay.example/charge?key=pw4\"\n\
             [dashboard]\npeers = [\"http://ops:pw5@worker-1:9100\"]",
        )
        .unwrap();
        let text = to_toml(&settings).unwrap();
        for secret in ["pw1", "pw2", "pw3", "pw4", "pw5", "\"tok\""] {
            assert!(!text.contains(secret), "{secret} leaked:\n{text}");
        }
        // What is printed is a valid configuration file (with the secrets to fill back in).
        let shown = load_toml(&text).unwrap();
        settings.admin_token = shown.admin_token.clone();
        assert_eq!(shown.workers, settings.workers);
        assert_eq!(shown.rabbitmq, settings.rabbitmq);
    }
}
