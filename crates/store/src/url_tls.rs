//! What a store URL says about TLS, for both shared-server stores. Their drivers read the mode
//! from `sslmode` or `ssl-mode`; when a URL names neither, ordermill connects in plaintext
//! instead of the drivers' default, "TLS when the server offers it, certificate unchecked":
//! a database on loopback or a private network pays nothing for encryption (Debian's
//! PostgreSQL offers TLS with a self-signed certificate out of the box, so that default would
//! encrypt every local connection and prove nothing), and one reached across a network asks
//! for a checked mode in its URL, as a managed database's connection string does.

/// How one engine's URLs spell TLS, for what ordermill tells an operator.
pub(crate) struct Spelling {
    pub(crate) engine: &'static str,
    /// The mode that checks the certificate and the host name it carries.
    pub(crate) strict: &'static str,
    /// The parameter naming a PEM file of CAs to trust.
    pub(crate) root: &'static str,
}

pub(crate) const POSTGRES: Spelling =
    Spelling { engine: "PostgreSQL", strict: "sslmode=verify-full", root: "sslrootcert" };
pub(crate) const MYSQL: Spelling =
    Spelling { engine: "MySQL", strict: "ssl-mode=VERIFY_IDENTITY", root: "ssl-ca" };

/// Modes that may encrypt without checking the server's certificate (both engines' names).
const UNCHECKED: [&str; 5] = ["allow", "prefer", "require", "preferred", "required"];

/// Whether `url` names a TLS mode at all (when not, the store sets plaintext). One that
/// checks nothing draws a warning.
pub(crate) fn names_a_mode(url: &str, spelling: &Spelling) -> bool {
    let Some((key, mode)) = mode(url) else { return false };
    if UNCHECKED.contains(&mode.to_ascii_lowercase().as_str()) {
        tracing::warn!(
            "The store URL's {key}={mode} does not check the {engine} server's certificate: \
             anyone on the path can pose as the server. Use {strict}, with {root}=PATH if a \
             private CA signed the certificate.",
            engine = spelling.engine,
            strict = spelling.strict,
            root = spelling.root,
        );
    }
    true
}

/// What to do about a connection that failed on the server's certificate; `None` when
/// `error` is about something else.
pub(crate) fn certificate_hint(error: &str, spelling: &Spelling) -> Option<String> {
    error.to_ascii_lowercase().contains("certificate").then(|| {
        format!(
            "the server's TLS certificate was not accepted: if a private CA signed it, add \
             {root}=PATH (that CA's PEM file) to the URL; with {strict} the URL's host must \
             also be a name the certificate carries",
            root = spelling.root,
            strict = spelling.strict,
        )
    })
}

/// The URL's TLS parameter and its value: `("sslmode", "require")`.
fn mode(url: &str) -> Option<(&str, &str)> {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "sslmode" || *key == "ssl-mode")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_spelling_in_the_query_names_a_mode_and_nothing_else_does() {
        assert!(names_a_mode("postgres://a@h/db?sslmode=verify-full", &POSTGRES));
        assert!(names_a_mode("mysql://a@h/db?x=1&ssl-mode=VERIFY_CA", &MYSQL));
        assert!(names_a_mode("postgres://a@h/db?sslmode=disable", &POSTGRES));
        assert!(!names_a_mode("postgres://a@h/db", &POSTGRES));
        assert!(!names_a_mode("postgres://a@h/db?application_name=sslmode", &POSTGRES));
        assert!(!names_a_mode("postgres://sslmode@h/db", &POSTGRES));
    }

    #[test]
    fn only_modes_that_may_check_nothing_are_unchecked() {
        for mode in ["require", "prefer", "allow", "REQUIRED", "PREFERRED"] {
            assert!(UNCHECKED.contains(&mode.to_ascii_lowercase().as_str()), "{mode}");
        }
        for mode in ["verify-full", "verify-ca", "VERIFY_IDENTITY", "VERIFY_CA", "disable"] {
            assert!(!UNCHECKED.contains(&mode.to_ascii_lowercase().as_str()), "{mode}");
        }
    }

    #[test]
    fn a_certificate_failure_names_the_parameter_to_add() {
        let hint = certificate_hint("invalid peer certificate: UnknownIssuer", &MYSQL).unwrap();
        assert!(hint.contains("ssl-ca=PATH") && hint.contains("VERIFY_IDENTITY"), "{hint}");
        assert!(certificate_hint("Connection refused (os error 111)", &POSTGRES).is_none());
    }
}
