//! The one duration type of ordermill's configuration: written with its unit (`"250ms"`,
//! `"10s"`, `"15m"`, `"1h 30m"`), never as a bare number of milliseconds.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A configured duration, read and printed with units by `humantime`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        HumanDuration(Duration::from_millis(ms))
    }

    /// `s` seconds.
    pub const fn from_secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }

    /// Whole milliseconds (saturating), for engines that take them.
    pub fn as_millis_u64(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&humantime::format_duration(self.0), f)
    }
}

impl std::str::FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        humantime::parse_duration(text.trim()).map(HumanDuration).map_err(|error| {
            format!("{text:?} is not a duration ({error}); write it with a unit, e.g. \"250ms\", \"10s\" or \"15m\"")
        })
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration with its unit, e.g. \"250ms\", \"10s\" or \"15m\"")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                text.parse().map_err(E::custom)
            }

            // A bare number is refused with the fix: it used to mean milliseconds.
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<HumanDuration, E> {
                Err(E::custom(format!(
                    "{n} has no unit; write it with one, e.g. \"{n}ms\" or \"{n}s\""
                )))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<HumanDuration, E> {
                self.visit_u64(n.unsigned_abs())
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_print_with_units() {
        for (text, ms) in [("250ms", 250), ("10s", 10_000), ("15m", 900_000), ("1h 30m", 5_400_000)]
        {
            let d: HumanDuration = text.parse().unwrap();
            assert_eq!(d.as_millis_u64(), ms, "{text}");
            assert_eq!(d.to_string().parse::<HumanDuration>().unwrap(), d, "round trip");
        }
        assert_eq!(HumanDuration::from_millis(250).to_string(), "250ms");
        assert!("ten seconds".parse::<HumanDuration>().unwrap_err().contains("e.g. \"250ms\""));
    }

    #[test]
    fn a_bare_number_is_refused_with_the_fix() {
        #[derive(Deserialize)]
        struct Holder {
            #[allow(dead_code)]
            d: HumanDuration,
        }
        let err = serde_json::from_str::<Holder>(r#"{"d": 500}"#).err().unwrap().to_string();
        assert!(err.contains("\"500ms\""), "{err}");
        let ok: Holder = serde_json::from_str(r#"{"d": "500ms"}"#).unwrap();
        assert_eq!(ok.d, HumanDuration::from_millis(500));
    }
}
