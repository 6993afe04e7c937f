//! Which engines a node runs on, parsed once when the configuration loads: `store`, `bus` and
//! `cache` are URLs (or the embedded defaults' names) in the file, the environment and the
//! flags, and enums everywhere after. A URL's password never leaves [`SecretUrl`] except to
//! connect.

use std::fmt;

use ordermill_core::redact_url;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A connection URL that may carry a password. `Display`, `Debug` and `Serialize` show it
/// redacted ([`redact_url`]); only [`SecretUrl::expose`] gives the real one, to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> Self {
        SecretUrl(url.into())
    }

    /// The URL with its password, for the driver that connects.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(&self.0))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({self})")
    }
}

impl Serialize for SecretUrl {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretUrl)
    }
}

/// A secret that is not a URL (a bearer token): shown as `***` everywhere.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Secret(secret.into())
    }

    /// The secret, for the one comparison that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

/// Where orders, the outbox and the stock of record are kept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreUrl {
    /// SQLite in the data dir (`"sqlite"`).
    #[default]
    Sqlite,
    /// PostgreSQL (`postgres://...`).
    Postgres(SecretUrl),
    /// MySQL 8 or MariaDB 10.6+ (`mysql://...`).
    Mysql(SecretUrl),
}

impl StoreUrl {
    /// The shared database's URL (PostgreSQL or MySQL); `None` for the embedded store.
    pub fn shared(&self) -> Option<&SecretUrl> {
        match self {
            StoreUrl::Sqlite => None,
            StoreUrl::Postgres(url) | StoreUrl::Mysql(url) => Some(url),
        }
    }
}

/// How events travel.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BusUrl {
    /// In-process, over the store's outbox (`"embedded"`).
    #[default]
    Embedded,
    /// RabbitMQ (`amqp://...`).
    Amqp(SecretUrl),
}

/// Where hot stock and the order read cache live.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CacheUrl {
    /// In this process (`"local"`).
    #[default]
    Local,
    /// Redis, shared by every node (`redis://...`).
    Redis(SecretUrl),
}

/// Reads an engine setting: one of `local` (the embedded engine's names; earlier releases'
/// aliases included) or a URL with one of `schemes`. `None` is the embedded engine.
fn parse_engine(
    text: &str,
    local: &[&str],
    schemes: &[&str],
    refused: impl FnOnce(String) -> String,
) -> Result<Option<SecretUrl>, String> {
    if local.contains(&text) {
        Ok(None)
    } else if schemes.iter().any(|scheme| text.starts_with(scheme)) {
        Ok(Some(SecretUrl::new(text)))
    } else {
        Err(refused(redact_url(text)))
    }
}

/// Refuses a `rediss://` URL that turns certificate checks off. The stores' `sslmode` /
/// `ssl-mode` are theirs to read (`ordermill_store`, `url_tls.rs`).
fn refuse_unchecked_tls(key: &str, text: &str) -> Result<(), String> {
    if text.starts_with("rediss://") && text.contains("#insecure") {
        return Err(format!(
            "{key} = {:?} turns off the check of the server's certificate (#insecure), which \
             ordermill does not do: drop it, and set redis.ca_file to the PEM file of the CA \
             that signed the certificate if it is not one the system trusts",
            redact_url(text)
        ));
    }
    Ok(())
}

impl std::str::FromStr for StoreUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        refuse_unchecked_tls("store", text)?;
        let url = parse_engine(
            text,
            &["sqlite", "sqlite:", "embedded", "local", ""],
            &["postgres://", "postgresql://", "mysql://"],
            |shown| {
                format!(
                    "store = {shown:?} is not a store: use \"sqlite\" (embedded, the default), a postgres:// URL or a mysql:// URL (ORDERMILL_STORE, --store)"
                )
            },
        )?;
        Ok(match url {
            None => StoreUrl::Sqlite,
            Some(url) if url.expose().starts_with("mysql://") => StoreUrl::Mysql(url),
            Some(url) => StoreUrl::Postgres(url),
        })
    }
}

impl std::str::FromStr for BusUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        refuse_unchecked_tls("bus", text)?;
        let url = parse_engine(
            text,
            &["embedded", "local", ""],
            &["amqp://", "amqps://"],
            |shown| {
                format!(
                    "bus = {shown:?} is not a bus: use \"embedded\" (the default) or an amqp:// URL (ORDERMILL_BUS, --bus)"
                )
            },
        )?;
        Ok(url.map_or(BusUrl::Embedded, BusUrl::Amqp))
    }
}

impl std::str::FromStr for CacheUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        refuse_unchecked_tls("cache", text)?;
        let url = parse_engine(
            text,
            &["local", "embedded", ""],
            &["redis://", "rediss://"],
            |shown| {
                format!(
                    "cache = {shown:?} is not a cache: use \"local\" (in-process, the default) or a redis:// URL (ORDERMILL_CACHE, --cache)"
                )
            },
        )?;
        Ok(url.map_or(CacheUrl::Local, CacheUrl::Redis))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite => f.write_str("sqlite"),
            StoreUrl::Postgres(url) | StoreUrl::Mysql(url) => fmt::Display::fmt(url, f),
        }
    }
}

impl fmt::Display for BusUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusUrl::Embedded => f.write_str("embedded"),
            BusUrl::Amqp(url) => fmt::Display::fmt(url, f),
        }
    }
}

impl fmt::Display for CacheUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CacheUrl::Local => f.write_str("local"),
            CacheUrl::Redis(url) => fmt::Display::fmt(url, f),
        }
    }
}

/// Serde for the engine enums: read from their text form, written redacted (what `ordermill
/// config` prints is pasted into tickets).
macro_rules! serde_by_text {
    ($($ty:ty),+) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )+};
}
serde_by_text!(StoreUrl, BusUrl, CacheUrl);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_are_parsed_from_their_names_and_urls() {
        assert_eq!("sqlite".parse::<StoreUrl>(), Ok(StoreUrl::Sqlite));
        assert!(matches!("postgres://a@h/db".parse::<StoreUrl>(), Ok(StoreUrl::Postgres(_))));
        assert!(matches!("mysql://a@h:3306/db".parse::<StoreUrl>(), Ok(StoreUrl::Mysql(_))));
        assert_eq!("embedded".parse::<BusUrl>(), Ok(BusUrl::Embedded));
        assert!(matches!("amqp://g:g@h/%2f".parse::<BusUrl>(), Ok(BusUrl::Amqp(_))));
        assert_eq!("local".parse::<CacheUrl>(), Ok(CacheUrl::Local));
        assert!(matches!("redis://h:6379".parse::<CacheUrl>(), Ok(CacheUrl::Redis(_))));
        for (err, needle) in [
            ("mariadb://u:pw@h".parse::<StoreUrl>().unwrap_err(), "is not a store"),
            ("kafka://h".parse::<BusUrl>().unwrap_err(), "is not a bus"),
            ("memcached://h".parse::<CacheUrl>().unwrap_err(), "is not a cache"),
        ] {
            assert!(err.contains(needle), "{err}");
            assert!(!err.contains("pw"), "a password in a refused URL is redacted too: {err}");
        }
    }

    #[test]
    fn store_tls_is_the_stores_to_read_and_only_an_unchecked_rediss_is_refused() {
        for url in [
            "postgres://app:pw@db/orders?sslmode=disable",
            "postgres://app:pw@db/orders?sslmode=verify-full&sslrootcert=/ca.pem",
            "postgres://app:pw@db/orders?sslmode=require",
        ] {
            assert!(matches!(url.parse::<StoreUrl>(), Ok(StoreUrl::Postgres(_))), "{url}");
        }
        for url in [
            "mysql://app:pw@db/orders?ssl-mode=VERIFY_IDENTITY&ssl-ca=/ca.pem",
            "mysql://app:pw@db/orders?ssl-mode=REQUIRED",
        ] {
            assert!(matches!(url.parse::<StoreUrl>(), Ok(StoreUrl::Mysql(_))), "{url}");
        }
        assert!(matches!("rediss://:pw@cache:6380".parse::<CacheUrl>(), Ok(CacheUrl::Redis(_))));
        assert!(matches!("amqps://app:pw@mq/%2f".parse::<BusUrl>(), Ok(BusUrl::Amqp(_))));
        let err = "rediss://:pw@cache:6380/0#insecure".parse::<CacheUrl>().unwrap_err();
        assert!(err.contains("#insecure") && err.contains("redis.ca_file"), "{err}");
        assert!(!err.contains("pw@"), "redacted: {err}");
    }

    #[test]
    fn secrets_are_redacted_wherever_they_are_shown() {
        let store: StoreUrl = "postgres://app:hunter2@db/orders".parse().unwrap();
        assert_eq!(store.to_string(), "postgres://app:***@db/orders");
        assert!(!format!("{store:?}").contains("hunter2"));
        assert_eq!(serde_json::to_string(&store).unwrap(), "\"postgres://app:***@db/orders\"");
        let StoreUrl::Postgres(url) = store else { unreachable!("parsed as postgres above") };
        assert_eq!(url.expose(), "postgres://app:hunter2@db/orders");
        let token = Secret::new("t0ken");
        assert!(!format!("{token:?}").contains("t0ken"));
        assert_eq!(serde_json::to_string(&token).unwrap(), "\"***\"");
    }
}
