//! Session ids and timestamps, in UTC: `20261126-042800-ab12` sorts by start time, is
//! short to type, and its random tail keeps two agents started in the same second apart
//! (the file is created exclusively, so a clash is retried, never shared).

use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

/// Broken-down UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Utc {
    pub fn now() -> Utc {
        Utc::from_unix(unix_secs())
    }

    /// Days to a civil date: Howard Hinnant's `civil_from_days`.
    pub fn from_unix(secs: i64) -> Utc {
        let days = secs.div_euclid(86_400);
        let of_day = secs.rem_euclid(86_400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Utc {
            year,
            month,
            day,
            hour: of_day / 3600,
            minute: of_day / 60 % 60,
            second: of_day % 60,
        }
    }

    /// `2026-11-26T04:28:00Z`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `20261126-042800`.
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}-{:02}{:02}{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

pub fn unix_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A new session id for a session starting at `at`.
pub fn new_id(at: Utc) -> String {
    // The standard library's randomly keyed hasher: random enough to tell apart two
    // sessions started in the same second, with no extra crate.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    hasher.write_u32(std::process::id());
    format!("{}-{:04x}", at.compact(), hasher.finish() & 0xffff)
}

/// Whether `text` could be (a prefix of) a session id: digits, lowercase hex and `-`
/// only, so it can never name a path outside the sessions directory.
pub fn is_id_like(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c) || c == '-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_and_ids() {
        assert_eq!(Utc::from_unix(0).rfc3339(), "1970-01-01T00:00:00Z");
        // 2026-11-26 04:28:00 UTC.
        let at = Utc::from_unix(1_795_667_280);
        assert_eq!(at.rfc3339(), "2026-11-26T04:28:00Z");
        assert_eq!(
            Utc::from_unix(951_782_400).rfc3339(),
            "2000-02-29T00:00:00Z"
        );
        let id = new_id(at);
        assert!(id.starts_with("20261126-042800-"), "{id}");
        assert_eq!(id.len(), "20261126-042800-ab12".len());
        assert!(is_id_like(&id));
        assert!(!is_id_like("../x") && !is_id_like(""));
    }
}
