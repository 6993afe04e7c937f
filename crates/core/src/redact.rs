//! Secrets out of what people read: the one redaction used for every URL that reaches a log,
//! an error, a dead letter, a report or `ordermill config`.

/// `url` with its password and every query value masked: `amqp://app:***@mq:5672/%2f`,
/// `https://hooks.example/x?token=***`, and an HTTP URL's bare user (a token, there):
/// `https://***@hooks.example/x`. Text that is not a URL comes back unchanged.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else { return url.to_owned() };
    let (before_query, query) = match url.split_once('?') {
        Some((head, query)) if head.len() >= scheme_end => (head, Some(query)),
        _ => (url, None),
    };
    // The authority ends at the first '/' after the scheme; '@' inside it ends the userinfo.
    let authority_end =
        before_query[scheme_end..].find('/').map_or(before_query.len(), |i| scheme_end + i);
    let mut out = String::with_capacity(url.len());
    match before_query[scheme_end..authority_end].rfind('@') {
        Some(at) => {
            let userinfo = &before_query[scheme_end..scheme_end + at];
            out.push_str(&before_query[..scheme_end]);
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                // A user alone is a name in a database URL, but a token in an HTTP one
                // (`https://TOKEN@hooks.example/...`).
                None if before_query.starts_with("http") => out.push_str("***"),
                None => out.push_str(userinfo),
            }
            out.push_str(&before_query[scheme_end + at..]);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) => format!("{name}=***"),
                None => pair.to_owned(),
            })
            .collect();
        out.push_str(&masked.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_query_values_never_reach_messages() {
        assert_eq!(
            redact_url("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(redact_url("postgres://app@db/orders"), "postgres://app@db/orders");
        assert_eq!(redact_url("redis://:pw@cache:6379/0"), "redis://:***@cache:6379/0");
        assert_eq!(
            redact_url("https://hooks.example/pay?token=abc&x=1"),
            "https://hooks.example/pay?token=***&x=***"
        );
        assert_eq!(redact_url("https://u:p@h/a@b?k=v"), "https://u:***@h/a@b?k=***");
        assert_eq!(redact_url("https://s3cr3t@hooks.example/x"), "https://***@hooks.example/x");
        assert_eq!(redact_url("sqlite"), "sqlite");
        assert_eq!(redact_url("embedded"), "embedded");
    }
}
