//! Reading a node's `/metrics` (the Prometheus text format) back: one sample a line, for the
//! two things a run takes from it — the queues' depth before the reference run and the
//! stage histograms. The bench does not depend on the server crate (it loads other systems
//! too), so it reads the few series it needs itself.

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Sample<'a> {
    pub name: &'a str,
    /// What stands between the braces (empty without labels).
    labels: &'a str,
    pub value: f64,
}

impl<'a> Sample<'a> {
    /// The value of label `key`, when the sample carries it.
    pub fn label(&self, key: &str) -> Option<&'a str> {
        let mut rest = self.labels;
        while !rest.is_empty() {
            let (name, after) = rest.split_once("=\"")?;
            let (value, after) = after.split_once('"')?;
            if name.trim_start_matches(',').trim() == key {
                return Some(value);
            }
            rest = after;
        }
        None
    }
}

/// The samples of `text`, skipping comments and lines that are not a sample.
pub(crate) fn samples(text: &str) -> impl Iterator<Item = Sample<'_>> {
    text.lines().filter(|line| !line.starts_with('#')).filter_map(sample)
}

fn sample(line: &str) -> Option<Sample<'_>> {
    let (name, labels, rest) = match line.split_once('{') {
        Some((name, after)) => {
            let (labels, rest) = after.rsplit_once('}')?;
            (name, labels, rest)
        }
        None => {
            let (name, rest) = line.split_once(' ')?;
            (name, "", rest)
        }
    };
    // A timestamp may follow the value.
    let value = rest.split_whitespace().next()?.parse::<f64>().ok()?;
    Some(Sample { name: name.trim(), labels, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_carry_their_name_labels_and_value() {
        let text = "# HELP x Help text.\n\
                    # TYPE x counter\n\
                    x 3\n\
                    y{queue=\"notify\",le=\"0.005\"} 12 1700000000000\n\
                    \n\
                    not a sample\n";
        let read: Vec<_> = samples(text).collect();
        assert_eq!(read.len(), 2, "{read:?}");
        assert_eq!((read[0].name, read[0].value, read[0].label("queue")), ("x", 3.0, None));
        assert_eq!((read[1].name, read[1].value), ("y", 12.0), "the timestamp is not the value");
        assert_eq!(read[1].label("queue"), Some("notify"));
        assert_eq!(read[1].label("le"), Some("0.005"));
        assert_eq!(read[1].label("e"), None, "a label is matched by its whole name");
    }
}
