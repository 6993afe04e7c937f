//! Whether a PostgreSQL connection uses TLS, and how strictly: as the URL's `sslmode` says,
//! and in plaintext when it says nothing (`crate::url_tls` says why).

use sqlx::postgres::{PgConnectOptions, PgSslMode};

use ordermill_core::ports::StoreError;

use crate::url_tls::{POSTGRES, names_a_mode};

/// `url` parsed, its TLS as its `sslmode` (or `ssl-mode`) says; `disable` when it has none.
pub(super) fn tls_as_the_url_says(url: &str) -> Result<PgConnectOptions, StoreError> {
    let options: PgConnectOptions = url
        .parse()
        .map_err(|error| StoreError::Backend(format!("invalid PostgreSQL URL: {error}").into()))?;
    if names_a_mode(url, &POSTGRES) {
        Ok(options)
    } else {
        Ok(options.ssl_mode(PgSslMode::Disable))
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
    fn an_unknown_mode_is_a_clear_error() {
        let Err(err) = tls_as_the_url_says("postgres://app@db/orders?sslmode=sometimes") else {
            panic!("accepted an unknown sslmode")
        };
        let why = std::error::Error::source(&err).map(ToString::to_string).unwrap_or_default();
        assert!(why.contains("invalid PostgreSQL URL") && why.contains("sometimes"), "{why}");
    }
}
