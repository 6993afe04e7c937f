//! One answer the README shows, and whether what a node answered is that answer.

use serde_json::Value;

/// An answer as the README writes it: `201 {"order_id":"01a2...","total":"39.98",...}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Expectation {
    /// The comment's text, continuation lines included.
    pub text: String,
    /// The HTTP status it names, if it names one.
    pub status: Option<u16>,
    /// Every `"key":value` it shows with a string, number, boolean or null value.
    pub pairs: Vec<(String, Shown)>,
    /// No later comment line continues it (a blank line or a command came between).
    pub closed: bool,
}

/// A value as the README shows it.
#[derive(Debug, Clone, PartialEq)]
pub enum Shown {
    Text(String),
    Literal(Value),
}

impl Expectation {
    pub fn parse(comment: &str) -> Expectation {
        let mut expectation =
            Expectation { text: String::new(), status: None, pairs: Vec::new(), closed: false };
        expectation.extend(comment);
        expectation
    }

    /// Adds a continuation line and reads the whole text again.
    pub fn extend(&mut self, comment: &str) {
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.push_str(comment.trim());
        self.status = status(&self.text);
        self.pairs = pairs(&self.text);
    }

    /// Whether this shows anything a node's answer could be checked against.
    pub fn checks_anything(&self) -> bool {
        self.status.is_some() || !self.pairs.is_empty()
    }

    /// `Ok` when an answer with `status` (if it was captured) and `body` is this one;
    /// otherwise what differs.
    pub fn check(&self, status: Option<u16>, body: &str) -> Result<(), String> {
        if let (Some(shown), Some(got)) = (self.status, status)
            && shown != got
        {
            return Err(format!("status {got}, the README shows {shown}"));
        }
        if self.pairs.is_empty() {
            return Ok(());
        }
        let answer: Value = serde_json::from_str(body.trim())
            .map_err(|e| format!("the answer is not JSON ({e}): {body}"))?;
        let mut all = Vec::new();
        flatten(&answer, &mut all);
        for (key, shown) in &self.pairs {
            let found = all.iter().any(|(k, v)| *k == key && matches(key, shown, v));
            if !found {
                let got: Vec<String> =
                    all.iter().filter(|(k, _)| *k == key).map(|(_, v)| v.to_string()).collect();
                return Err(format!(
                    "\"{key}\" is not {shown:?} (the answer has {})",
                    if got.is_empty() { "no such key".to_owned() } else { got.join(", ") }
                ));
            }
        }
        Ok(())
    }
}

/// `201 {...}` at the start, or `(409)` / `(401: no credentials)` after the answer.
fn status(text: &str) -> Option<u16> {
    fn code(s: &str) -> Option<&str> {
        s.get(..3).filter(|c| c.bytes().all(|b| b.is_ascii_digit()))
    }
    let leading = code(text).filter(|_| text.len() == 3 || text.as_bytes()[3] == b' ');
    let trailing = text.rfind('(').and_then(|i| {
        let rest = &text[i + 1..];
        code(rest).filter(|_| matches!(rest.as_bytes().get(3), Some(b')' | b':')))
    });
    leading.or(trailing).and_then(|c| c.parse().ok())
}

/// Every `"key":value` in `text` whose value is a string, number, boolean or null (the keys
/// inside an object or array value are found on their own).
fn pairs(text: &str) -> Vec<(String, Shown)> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('"') {
        let Some((key, after)) = string_at(&rest[open..]) else { break };
        let Some(value) = after.trim_start().strip_prefix(':') else {
            // A string that is no key (an array's element, a quoted word): go on after it.
            rest = after;
            continue;
        };
        let value = value.trim_start();
        if value.starts_with('"') {
            let Some((text, after)) = string_at(value) else { break };
            found.push((key, Shown::Text(text)));
            rest = after;
            continue;
        }
        let end = value.find([',', '}', ']', ' ']).unwrap_or(value.len());
        if let Ok(literal) = serde_json::from_str::<Value>(&value[..end])
            && !literal.is_object()
            && !literal.is_array()
        {
            found.push((key, Shown::Literal(literal)));
        }
        rest = value;
    }
    found
}

/// The string starting at `text`'s opening quote, and what follows its closing one.
fn string_at(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut escaped = false;
    for (i, c) in body.char_indices() {
        match c {
            '\\' if !escaped => escaped = true,
            '"' if !escaped => {
                let decoded = serde_json::from_str(&text[..i + 2]).ok()?;
                return Some((decoded, &body[i + 1..]));
            }
            _ => escaped = false,
        }
    }
    None
}

fn flatten<'a>(value: &'a Value, into: &mut Vec<(&'a str, &'a Value)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                into.push((key, inner));
                flatten(inner, into);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| flatten(item, into)),
        _ => {}
    }
}

fn matches(key: &str, shown: &Shown, got: &Value) -> bool {
    match (shown, got) {
        (Shown::Literal(literal), got) => literal == got,
        (Shown::Text(shown), Value::String(got)) => {
            shown == got
                || (shown.contains("...") && elided_matches(shown, got))
                || (is_a_clock(key) && shape(shown) == shape(got))
        }
        (Shown::Text(_), _) => false,
    }
}

/// Values the README cannot know: instants and time left.
fn is_a_clock(key: &str) -> bool {
    key == "at" || key.ends_with("_at") || key == "pay_by" || key == "time_left"
}

/// `text` with every run of digits as one `0`: `"14m 59s"` and `"15m 0s"` have one shape.
fn shape(text: &str) -> String {
    let mut out = String::new();
    let mut in_digits = false;
    for c in text.chars() {
        let digit = c.is_ascii_digit();
        if !digit {
            out.push(c);
        } else if !in_digits {
            out.push('0');
        }
        in_digits = digit;
    }
    out
}

/// `shown`'s `...` stand for anything; an id's example start before one
/// (`"01a201aa-..."`, `/api/reports/01a2.../download`) does too.
fn elided_matches(shown: &str, got: &str) -> bool {
    let parts: Vec<&str> = shown.split("...").collect();
    let last = parts.len() - 1;
    let parts: Vec<&str> = parts
        .iter()
        .enumerate()
        .map(|(i, part)| if i < last { without_example_id(part) } else { part })
        .collect();
    let Some(mut rest) = got.strip_prefix(parts[0]) else { return false };
    for middle in &parts[1..last] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    rest.ends_with(parts[last])
}

fn without_example_id(part: &str) -> &str {
    let id_start = part
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_hexdigit() || *c == '-')
        .last()
        .map_or(part.len(), |(i, _)| i);
    let starts_an_id = id_start == 0 || part[..id_start].ends_with('/');
    if starts_an_id && part.len() - id_start >= 2 { &part[..id_start] } else { part }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order() -> String {
        serde_json::json!({
            "order_id": "01a24d41-9885-74da-bd0b-3661e3c07bee", "status": "confirmed",
            "total": "39.98", "items": [{"sku": "sku-1", "quantity": 2}],
            "history": [{"status": "accepted", "at": "2026-12-06T21:27:54.245Z"}],
            "per_customer_limit": null,
        })
        .to_string()
    }

    #[test]
    fn statuses_lead_or_trail() {
        assert_eq!(Expectation::parse(" 201 {\"a\":1}").status, Some(201));
        assert_eq!(Expectation::parse(" {\"a\":1}   (409)").status, Some(409));
        assert_eq!(Expectation::parse(" {} (401: no credentials)").status, Some(401));
        assert_eq!(Expectation::parse(" 201").status, Some(201));
        assert_eq!(Expectation::parse(" stock back to 10 (once cancelled)").status, None);
        assert_eq!(Expectation::parse(" 2014 was a year").status, None);
    }

    #[test]
    fn only_keyed_scalars_are_pairs() {
        let e = Expectation::parse(
            r#" {"a":"x","n":2,"ok":true,"none":null,"obj":{"b":"y"},"arr":["z"]} a "word" here"#,
        );
        let keys: Vec<&str> = e.pairs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "n", "ok", "none", "b"]);
        assert!(!Expectation::parse(" stock_available back to 10").checks_anything());
    }

    #[test]
    fn an_answer_matches_what_the_readme_shows_of_it() {
        let shown = Expectation::parse(
            r#" {"order_id":"01a201aa-...","status":"confirmed",...,"history":[{"status":"accepted","at":"2026-12-01T10:15:00.000Z"}],"total":"39.98","quantity":2,"per_customer_limit":null}"#,
        );
        assert_eq!(shown.check(Some(200), &order()), Ok(()));
    }

    #[test]
    fn a_different_value_status_or_missing_key_is_reported() {
        let check = |shown: &str, status| Expectation::parse(shown).check(status, &order());
        assert!(check(r#" {"total":"39.99"}"#, None).unwrap_err().contains("39.98"));
        assert!(check(r#" {"quantity":3}"#, None).is_err());
        assert!(check(r#" {"status":"cancelled"}"#, None).is_err());
        assert!(check(r#" {"refund":"x"}"#, None).unwrap_err().contains("no such key"));
        assert!(check(r#" 201 {"total":"39.98"}"#, Some(409)).unwrap_err().contains("409"));
        assert!(check(r#" {"total":"39.98"}"#, None).is_ok());
        assert!(Expectation::parse(r#" {"a":"b"}"#).check(None, "not json").is_err());
    }

    #[test]
    fn elisions_ids_and_clocks() {
        assert!(elided_matches("01a201aa-...", "0199-xyz"));
        assert!(elided_matches("/api/reports/01a2.../download", "/api/reports/0b7f/download"));
        assert!(!elided_matches("/api/reports/01a2.../download", "/api/orders/0b7f/download"));
        assert!(elided_matches("limited to 1 per customer; ...", "limited to 1 per customer; x"));
        assert!(!elided_matches("limited to 2 per customer; ...", "limited to 1 per customer; x"));
        assert!(elided_matches(
            "https://pay.example/checkout/...",
            "https://pay.example/checkout/a"
        ));
        let clock = |key, shown, got: &str| matches(key, &Shown::Text(shown), &Value::from(got));
        assert!(clock("time_left", "14m 59s".into(), "15m 0s"));
        assert!(clock("pay_by", "2026-12-01T10:15:00.000Z".into(), "2027-01-02T03:04:05.678Z"));
        assert!(!clock("pay_by", "2026-12-01T10:15:00.000Z".into(), "soon"));
        assert!(!clock("total", "39.98".into(), "39.99"), "money is never a shape");
    }
}
