//! Whether a store URL says anything about TLS. Both shared-server drivers read the mode from
//! `sslmode` or `ssl-mode`; when a URL names neither, ordermill connects in plaintext instead
//! of the drivers' "TLS when offered, certificate unchecked" (`postgres/tls.rs` says why).

/// Whether the URL's query names a TLS mode.
pub(crate) fn names_ssl_mode(url: &str) -> bool {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    query.split('&').any(|pair| {
        let key = pair.split_once('=').map_or(pair, |(key, _)| key);
        key == "sslmode" || key == "ssl-mode"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_spelling_in_the_query_names_a_mode_and_nothing_else_does() {
        assert!(names_ssl_mode("postgres://a@h/db?sslmode=require"));
        assert!(names_ssl_mode("mysql://a@h/db?x=1&ssl-mode=REQUIRED"));
        assert!(!names_ssl_mode("postgres://a@h/db"));
        assert!(!names_ssl_mode("postgres://a@h/db?application_name=sslmode"));
        assert!(!names_ssl_mode("postgres://sslmode@h/db"));
    }
}
