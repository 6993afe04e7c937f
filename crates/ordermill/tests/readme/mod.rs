//! The README's shell sessions as steps: each command (continuation lines joined) with the
//! answers the README shows under it or beside it, and the check of an answer against them.
//!
//! The README writes answers for people, so the check reads them as people do: every
//! `"key":value` shown must be in the answer (at any depth), `...` stands for what the README
//! leaves out, an id's first characters before `...` are an example (`"01a201aa-..."`), times
//! and time-left values are checked for their shape only, and a status is the leading
//! `201 ` or a trailing `(409)`. Prose comments check nothing.

#![allow(dead_code, clippy::unwrap_used)] // shared test code: a panic is the failure report

pub mod expect;

pub use expect::Expectation;

/// One command of a README shell block and what the README says it answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// The command, continuation lines joined with spaces.
    pub command: String,
    /// The answers shown under it (`# {...}` lines) or beside it (`cmd   # 201`).
    pub expect: Vec<Expectation>,
    /// The README line the command starts on, for failure messages.
    pub line: usize,
}

/// The text of the README's `## {title}` section, up to the next `## ` heading, with the
/// line number its first line has in the file.
pub fn section<'a>(readme: &'a str, title: &str) -> (usize, &'a str) {
    let heading = format!("## {title}\n");
    let start = readme.find(&heading).unwrap_or_else(|| panic!("README has no '## {title}'"));
    let rest = &readme[start + heading.len()..];
    let end = rest.find("\n## ").map_or(rest.len(), |i| i + 1);
    let first_line = readme[..start].lines().count() + 2;
    (first_line, &rest[..end])
}

/// The steps of every ```` ```sh ```` block in `text` (whose first line is README line
/// `first_line`), in order.
pub fn steps(first_line: usize, text: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut in_block = false;
    let mut pending: Option<Pending> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if !in_block {
            in_block = trimmed == "```sh";
            continue;
        }
        if trimmed == "```" {
            in_block = false;
            continue;
        }
        let (code, comment) = split_comment(trimmed);
        if let Some(mut command) = pending.take() {
            command.push(code);
            command.finish_or_wait(&mut steps, &mut pending, comment);
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            let Some(step) = steps.last_mut() else { continue };
            // `#      "items":...` goes on with the answer above it.
            match step.expect.last_mut() {
                Some(last) if comment.starts_with("  ") && !last.closed => last.extend(comment),
                _ => step.expect.push(Expectation::parse(comment)),
            }
            continue;
        }
        if trimmed.is_empty() {
            if let Some(last) = steps.last_mut().and_then(|s| s.expect.last_mut()) {
                last.closed = true;
            }
            continue;
        }
        let mut command =
            Pending { line: first_line + i, text: String::new(), depth: 0, more: false };
        command.push(code);
        command.finish_or_wait(&mut steps, &mut pending, comment);
    }
    steps
}

/// A command whose lines are still coming: after a `\`, or inside a `name() {` ... `}`.
struct Pending {
    line: usize,
    text: String,
    depth: usize,
    more: bool,
}

impl Pending {
    fn push(&mut self, code: &str) {
        if !self.text.is_empty() {
            // A function's body keeps its lines; a `\` continuation joins them.
            self.text.push(if self.depth > 0 { '\n' } else { ' ' });
        }
        self.more = code.ends_with('\\');
        self.text.push_str(code.trim_end_matches('\\').trim());
        if code.ends_with('{') {
            self.depth += 1;
        } else if code == "}" {
            self.depth = self.depth.saturating_sub(1);
        }
    }

    fn finish_or_wait(
        self,
        steps: &mut Vec<Step>,
        pending: &mut Option<Pending>,
        comment: Option<&str>,
    ) {
        if self.more || self.depth > 0 {
            *pending = Some(self);
            return;
        }
        let mut expect: Vec<Expectation> = comment.map(Expectation::parse).into_iter().collect();
        // A comment beside a command is one line: nothing under it continues it.
        expect.iter_mut().for_each(|e| e.closed = true);
        steps.push(Step { command: self.text, expect, line: self.line });
    }
}

/// A shell line split at a `#` that starts a comment: outside quotes, after a space.
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let (mut single, mut double) = (false, false);
    let mut previous = ' ';
    for (i, c) in line.char_indices() {
        match c {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && previous.is_whitespace() => {
                return (line[..i].trim_end(), Some(&line[i + 1..]));
            }
            _ => {}
        }
        previous = c;
    }
    (line, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = "# x\n\n## A session\n\nSome prose.\n\n```sh\n\
        curl -s localhost:8080/a \\\n  -d '{\"a\": 1}'\n\
        # 201 {\"order_id\":\"01a2...\",\n\
        #      \"total\":\"1.00\",...}\n\
        curl -s localhost:8080/b   # 201\n\
        curl -s 'localhost:8080/c#frag'\n\
        f() {   # f X: prints X\n  local x\n  printf '{\"a\":%s}' \"$1\"\n}\n\
        ```\n\n## Next\n```sh\nnot-this\n```\n";

    #[test]
    fn a_section_ends_at_the_next_heading_of_its_level() {
        let (first, text) = section(README, "A session");
        assert_eq!(first, 4);
        assert!(text.contains("curl -s localhost:8080/a"));
        assert!(!text.contains("not-this"));
    }

    #[test]
    fn commands_join_their_continuations_and_keep_the_answers_shown_with_them() {
        let (first, text) = section(README, "A session");
        let steps = steps(first, text);
        assert_eq!(steps.len(), 4, "{steps:#?}");
        assert_eq!(steps[0].command, "curl -s localhost:8080/a -d '{\"a\": 1}'");
        assert_eq!(steps[0].line, 8);
        assert_eq!(steps[0].expect.len(), 1, "the indented comment goes on with the first");
        assert_eq!(steps[0].expect[0].status, Some(201));
        assert_eq!(steps[0].expect[0].pairs.len(), 2);
        assert_eq!(steps[1].command, "curl -s localhost:8080/b");
        assert_eq!(steps[1].expect[0].status, Some(201));
        assert_eq!(steps[2].command, "curl -s 'localhost:8080/c#frag'", "a quoted # is no comment");
        assert!(steps[2].expect.is_empty());
        assert_eq!(
            steps[3].command, "f() {\nlocal x\nprintf '{\"a\":%s}' \"$1\"\n}",
            "a function whole"
        );
    }
}
