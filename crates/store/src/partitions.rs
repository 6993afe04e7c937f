//! What partition maintenance means for both shared-server stores: daily partitions of
//! `orders` and `processed_events` made ahead of time, `processed_events` partitions past their
//! retention dropped whole. The PostgreSQL store does it in SQL functions (its 0005), the MySQL
//! store with `ALTER TABLE ... REORGANIZE / DROP PARTITION` (`mysql/partitions.rs`).

use std::time::{Duration, SystemTime};

/// Days of partitions kept ready ahead of today (UTC): a week without any maintenance run
/// before inserts start landing in the catch-all partition (still correct, just unsplit).
pub const DAYS_AHEAD: i32 = 7;

/// The shortest `processed_events` retention allowed: the record is what makes a redelivery
/// harmless, so it must outlive every redelivery — retries (at most `workers.retry_max` ×
/// `workers.max_attempts`, half an hour by default) and dead letters an operator replays.
pub const MIN_RETENTION: Duration = Duration::from_secs(2 * 24 * 60 * 60);

/// What one maintenance run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Maintenance {
    /// Partitions created.
    pub created: Vec<String>,
    /// `processed_events` partitions dropped.
    pub dropped: Vec<String>,
}

const DAY_MS: i64 = 86_400_000;

/// The UTC day (days since the epoch) of the millisecond `ms`.
pub(crate) fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// The smallest UUIDv7 of day `day`'s first millisecond: the lower bound of that day's ids.
pub(crate) fn first_id_of(day: i64) -> uuid::Uuid {
    let ms = u64::try_from(day.saturating_mul(DAY_MS)).unwrap_or(0).min((1 << 48) - 1);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    uuid::Uuid::from_bytes(bytes)
}

/// `pYYYYMMDD`, the partition holding day `day`'s ids.
pub(crate) fn partition_name(day: i64) -> String {
    let secs = u64::try_from(day.max(0)).unwrap_or(0) * 86_400;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    let date = humantime::format_rfc3339_seconds(at).to_string();
    format!("p{}", date[..10].replace('-', ""))
}

/// The day a [`partition_name`] stands for; `None` for any other name.
pub(crate) fn day_of_partition(name: &str) -> Option<i64> {
    let digits = name.strip_prefix('p').filter(|d| d.len() == 8)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let text = format!("{}-{}-{}T00:00:00Z", &digits[..4], &digits[4..6], &digits[6..]);
    let at = humantime::parse_rfc3339(&text).ok()?;
    let secs = at.duration_since(SystemTime::UNIX_EPOCH).ok()?.as_secs();
    i64::try_from(secs / 86_400).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_names_its_partition_and_the_name_gives_the_day_back() {
        // 2026-12-01T10:00:00Z
        let day = day_of(1_796_119_200_000);
        assert_eq!(partition_name(day), "p20261201");
        assert_eq!(day_of_partition("p20261201"), Some(day));
        assert_eq!(day_of_partition("p_future"), None);
        assert_eq!(day_of_partition("p2026120"), None);
    }

    #[test]
    fn a_days_first_id_bounds_the_ids_made_that_day() {
        let day = day_of(1_796_119_200_000);
        let ids = ordermill_core::OrderIdGenerator::new();
        let id = ids.next_uuid(ordermill_core::UnixMillis(1_796_119_200_000));
        assert!(first_id_of(day) <= id && id < first_id_of(day + 1));
    }
}
