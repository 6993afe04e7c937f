//! Layered configuration: defaults → ordermill.toml → ORDERMILL_* env → flags.

use std::path::Path;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ordermill_server::Settings;

use crate::cli::ServeArgs;

const DEFAULT_FILE: &str = "ordermill.toml";

/// Merges every layer into [`Settings`].
pub fn load(args: &ServeArgs) -> anyhow::Result<Settings> {
    let mut figment = Figment::from(Serialized::defaults(Settings::default()));
    match &args.config {
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
    let env = Env::prefixed("ORDERMILL_")
        .split("__")
        .filter(|key| !key.as_str().to_ascii_lowercase().starts_with("test_"));
    figment = figment.merge(env);
    if let Some(listen) = args.listen {
        figment = figment.merge(("listen", listen));
    }
    if let Some(dir) = &args.data_dir {
        figment = figment.merge(("data_dir", dir));
    }
    if let Some(store) = &args.store {
        figment = figment.merge(("store", store));
    }
    if let Some(bus) = &args.bus {
        figment = figment.merge(("bus", bus));
    }
    if let Some(cache) = &args.cache {
        figment = figment.merge(("cache", cache));
    }
    if let Some(format) = args.log_format {
        figment = figment.merge(("log_format", format));
    }
    figment
        .extract()
        .context("invalid configuration (check ordermill.toml, ORDERMILL_* variables and flags)")
}

/// The settings as TOML, for `ordermill config`, with passwords and the admin token masked:
/// the output gets pasted into tickets and chats.
pub fn to_toml(settings: &Settings) -> anyhow::Result<String> {
    use ordermill_server::backends::redact;
    let mut shown = settings.clone();
    shown.store = redact(&shown.store);
    shown.bus = redact(&shown.bus);
    shown.cache = redact(&shown.cache);
    shown.rabbitmq.url = redact(&shown.rabbitmq.url);
    if shown.admin_token.is_some() {
        shown.admin_token = Some("***".into());
    }
    toml::to_string_pretty(&shown).context("settings cannot be written as TOML")
}
