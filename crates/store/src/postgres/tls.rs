//! Whether a PostgreSQL connection uses TLS, and how strictly: as the URL's `sslmode` says,
//! and in plaintext when it says nothing.
//!
//! libpq, and sqlx after it, default to `prefer`: TLS whenever the server offers it, with no
//! check of its certificate. ordermill defaults to plaintext instead: a database on loopback
//! or a private network pays nothing for encryption (Debian's PostgreSQL offers TLS with a
//! self-signed certificate out of the box, so `prefer` would encrypt every local connection
//! and check nothing), and one reached across a network asks for `verify-full` in its URL,
//! as a managed database's connection string does.

use sqlx::postgres::{PgConnectOptions, PgSslMode};

use ordermill_core::ports::StoreError;

use crate::url_tls::names_ssl_mode;

/// `url` parsed, its TLS as its `sslmode` (or `ssl-mode`) says; `disable` when it has none.
/// A mode that encrypts without checking the server's certificate draws a warning.
pub(super) fn tls_as_the_url_says(url: &str) -> Result<PgConnectOptions, StoreError> {
    let options: PgConnectOptions = url
        .parse()
        .map_err(|error| StoreError::Backend(format!("invalid PostgreSQL URL: {error}").into()))?;
    if !names_ssl_mode(url) {
        return Ok(options.ssl_mode(PgSslMode::Disable));
    }
    if let Some(mode) = unchecked(options.get_ssl_mode()) {
        tracing::warn!(
            sslmode = mode,
            "The store URL's sslmode={mode} does not check the PostgreSQL server's certificate: \
             anyone on the path can pose as the server. Use sslmode=verify-full, with \
             sslrootcert=PATH if a private CA signed the certificate."
        );
    }
    Ok(options)
}

/// The name of `mode` when it may connect without checking the server's certificate.
fn unchecked(mode: PgSslMode) -> Option<&'static str> {
    match mode {
        PgSslMode::Allow => Some("allow"),
        PgSslMode::Prefer => Some("prefer"),
        PgSslMode::Require => Some("require"),
        PgSslMode::Disable | PgSslMode::VerifyCa | PgSslMode::VerifyFull => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(url: &str) -> PgSslMode {
        tls_as_the_url_says(url).map(|o| o.get_ssl_mode()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn plaintext_unless_the_url_asks_for_tls_and_then_as_strictly_as_it_asks() {
        assert!(matches!(mode("postgres://app@db/orders"), PgSslMode::Disable));
        assert!(matches!(mode("postgres://app@db/orders?application_name=x"), PgSslMode::Disable));
        assert!(matches!(mode("postgres://app@db/orders?sslmode=prefer"), PgSslMode::Prefer));
        assert!(matches!(mode("postgres://app@db/orders?sslmode=require"), PgSslMode::Require));
        assert!(matches!(
            mode("postgres://app@db/orders?x=1&ssl-mode=verify-full&sslrootcert=/ca.pem"),
            PgSslMode::VerifyFull
        ));
        assert!(matches!(mode("postgres://app@db/orders?sslmode=verify-ca"), PgSslMode::VerifyCa));
    }

    #[test]
    fn only_modes_that_check_nothing_are_unchecked() {
        assert_eq!(unchecked(PgSslMode::Require), Some("require"));
        assert_eq!(unchecked(PgSslMode::Prefer), Some("prefer"));
        assert_eq!(unchecked(PgSslMode::VerifyFull), None);
        assert_eq!(unchecked(PgSslMode::VerifyCa), None);
        assert_eq!(unchecked(PgSslMode::Disable), None);
    }

    #[test]
    fn an_unknown_mode_is_a_clear_error() {
        let Err(err) = tls_as_the_url_says("postgres://app@db/orders?sslmode=sometimes") else {
            panic!("accepted an unknown sslmode")
        };
        let why = std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default();
        assert!(why.contains("invalid PostgreSQL URL") && why.contains("sometimes"), "{why}");
    }
}
