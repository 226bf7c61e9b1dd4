//! Cache keys and tags: `bff:v{format}:{kind}:{scope…}:{hash of the rest}`.
//!
//! The hash is 64-bit FNV-1a of the "rest" text, in 16 lowercase hex digits: tiny, dependency-free
//! and stable across Rust versions and platforms (unlike `std`'s `DefaultHasher`), so replicas
//! built at different times agree on keys.

use std::fmt;

pub use super::entry::CACHE_FORMAT;

/// What is cached (defined with the per-kind settings it keys: `config::CacheKind`).
pub use crate::config::CacheKind as Kind;

/// 64-bit FNV-1a.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A cache key: kind, the scope the value depends on, and a hash of everything else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Its kind.
    pub kind: Kind,
    text: String,
}

impl CacheKey {
    /// Builds `bff:v{format}:{kind}:{scope…}:{hash(rest)}`; scope parts are `name=value`.
    pub fn new(kind: Kind, scope: &[(&str, &(dyn fmt::Display + Sync))], rest: &str) -> CacheKey {
        use fmt::Write as _;
        // One buffer, written in place: keys are built on every cached read (callgrind: a
        // shared hit spent 9 % of its instructions here with a `format!` per part).
        let mut text = String::with_capacity(64);
        let _ = write!(text, "bff:v{CACHE_FORMAT}:{}", kind.name());
        for (name, value) in scope {
            let _ = write!(text, ":{name}={value}");
        }
        let _ = write!(text, ":{:016x}", fnv1a64(rest.as_bytes()));
        CacheKey { kind, text }
    }

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The Redis key holding a tag's generation.
pub fn tag_key(tag: &str) -> String {
    format!("bff:v{CACHE_FORMAT}:tag:{tag}")
}

/// Tags: what a cached value was derived from. Invalidating a tag bumps its generation.
pub mod tags {
    use chrono::NaiveDate;

    use crate::domain::{period::period_range, Period};

    /// Every entry carries this: flushing everything is one bump.
    pub const ALL: &str = "all";

    /// Every entry of a kind carries this.
    pub fn kind(kind: super::Kind) -> String {
        format!("kind:{}", kind.name())
    }

    /// The club row, its courts and schedule.
    pub fn club(club_id: i64) -> String {
        format!("club:{club_id}")
    }

    /// The live reservations of a club on a date (what availability depends on).
    pub fn club_slots(club_id: i64, date: NaiveDate) -> String {
        format!("club:{club_id}:slots:{date}")
    }

    /// The reservations of one period of a club (kind and first day).
    pub fn club_period(club_id: i64, period: Period, date: NaiveDate) -> String {
        let range = period_range(period, date);
        format!("club:{club_id}:{}:{}", period_name(period), range.from)
    }

    /// A user and their memberships.
    pub fn user(user_id: i64) -> String {
        format!("user:{user_id}")
    }

    /// The role_permissions table.
    pub const ROLE_PERMISSIONS: &str = "role_permissions";

    /// What a booking change on `date` makes stale: that day's availability and every dashboard
    /// whose current or previous period holds the date.
    pub fn booking_change(club_id: i64, date: NaiveDate) -> Vec<String> {
        let mut tags = vec![club_slots(club_id, date)];
        tags.extend(
            [Period::Day, Period::Week, Period::Month, Period::Year]
                .map(|p| club_period(club_id, p, date)),
        );
        tags
    }

    fn period_name(period: Period) -> &'static str {
        match period {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Year => "year",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_hierarchical_versioned_and_stable() {
        let key = CacheKey::new(
            Kind::CourtAvailability,
            &[("club", &7), ("date", &"2026-11-25")],
            "courts=all;slot=90",
        );
        assert_eq!(
            key.as_str(),
            format!(
                "bff:v{CACHE_FORMAT}:courtAvailability:club=7:date=2026-11-25:{:016x}",
                fnv1a64(b"courts=all;slot=90")
            )
        );
        // FNV-1a reference values: these must never change.
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
    }

    #[test]
    fn a_booking_change_touches_the_day_and_the_four_periods_holding_it() {
        let date = chrono::NaiveDate::from_ymd_opt(2026, 11, 21).unwrap();
        assert_eq!(
            tags::booking_change(3, date),
            vec![
                "club:3:slots:2026-11-21",
                "club:3:day:2026-11-21",
                "club:3:week:2026-11-16",
                "club:3:month:2026-11-01",
                "club:3:year:2026-01-01",
            ]
        );
    }
}
