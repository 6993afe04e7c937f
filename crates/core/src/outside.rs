//! How answers of outside services (the payment gateway, webhooks) are read: which ones are
//! worth retrying.

/// Whether an HTTP status from an outside service is a definite refusal of the request itself:
/// a 4xx says the request is wrong (bad payload, credentials, URL), so retrying the same
/// request cannot succeed and the message goes to the dead letters at once for an operator.
/// Except the 4xx that mean "not now": 408 (timeout), 409 (a conflicting request in flight),
/// 425 (too early), 429 (rate limited) — retried like a 5xx, an outage or a timeout. 402 is
/// a payment decline, read by the payment consumer before this.
///
/// A 3xx too: outside calls follow no redirect (a followed 302 turns the POST into a GET of
/// another URL, whose 200 would read as a charge made), so a redirect says the configured URL
/// is not the service's, which retrying cannot change.
pub fn definite_refusal(status: u16) -> bool {
    (300..400).contains(&status)
        || ((400..500).contains(&status) && !matches!(status, 408 | 409 | 425 | 429))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_redirect_or_a_4xx_that_is_not_a_not_now_ends_retrying() {
        for status in [301, 302, 303, 307, 308, 400, 401, 403, 404, 405, 410, 413, 415, 422] {
            assert!(definite_refusal(status), "{status}");
        }
        for status in [200, 201, 204, 408, 409, 425, 429, 500, 502, 503, 504] {
            assert!(!definite_refusal(status), "{status}");
        }
    }
}
