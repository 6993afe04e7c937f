//! Helpers shared by every crate's tests of real services. Reading an environment variable is
//! the only outside contact here; nothing connects anywhere.

/// The URL of a real service for a test, from environment variable `var`. Unset: prints why
/// the test skips and returns `None` — unless `ORDERMILL_TEST_REQUIRE_SERVICES=1` (CI), where
/// a skip would hide a broken backend, so it panics instead.
///
/// # Panics
/// When `var` is unset and services are required.
pub fn service_url(var: &str, example: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("ORDERMILL_TEST_REQUIRE_SERVICES").as_deref() != Ok("1"),
                "{var} is unset but ORDERMILL_TEST_REQUIRE_SERVICES=1: the service tests must run"
            );
            // Straight to stderr, past the test harness's capture, so a plain `cargo test`
            // shows why the test did nothing.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "skipping: set {var}={example} to run this test");
            None
        }
    }
}
