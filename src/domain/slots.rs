//! Availability slots: fixed-size slots from opening time, taken when a booking overlaps.

use super::schedule::Minute;

/// Smallest and largest slot size accepted, in minutes.
pub const SLOT_MINUTES_RANGE: std::ops::RangeInclusive<u32> = 15..=240;

/// One slot of one court.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Slot {
    /// Start, minutes since midnight.
    pub start: Minute,
    /// End (exclusive), minutes since midnight.
    pub end: Minute,
    /// Free to book.
    pub available: bool,
}

/// Slot boundaries for a day: for each opening interval, consecutive slots from its opening time,
/// the last one ending at or before its closing time.
pub fn slot_bounds(intervals: &[(Minute, Minute)], slot_minutes: u32) -> Vec<(Minute, Minute)> {
    let mut bounds = Vec::new();
    if slot_minutes == 0 {
        return bounds;
    }
    for &(opens, closes) in intervals {
        let mut start = opens;
        while start + slot_minutes <= closes {
            bounds.push((start, start + slot_minutes));
            start += slot_minutes;
        }
    }
    bounds
}

/// Whether `[a_start, a_end)` and `[b_start, b_end)` share a minute.
pub fn overlaps(a: (Minute, Minute), b: (Minute, Minute)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// A court's slots for a day given its busy intervals; a court in maintenance has none free.
pub fn court_slots(
    bounds: &[(Minute, Minute)],
    busy: &[(Minute, Minute)],
    in_maintenance: bool,
) -> Vec<Slot> {
    bounds
        .iter()
        .map(|&(start, end)| Slot {
            start,
            end,
            available: !in_maintenance && !busy.iter().any(|&b| overlaps((start, end), b)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slots_start_at_opening_and_fit_before_closing() {
        let bounds = slot_bounds(&[(8 * 60, 12 * 60)], 90);
        assert_eq!(bounds, vec![(480, 570), (570, 660)]);
        assert!(slot_bounds(&[], 60).is_empty());
    }

    #[test]
    fn a_booking_takes_every_slot_it_touches() {
        let bounds = slot_bounds(&[(600, 900)], 60);
        let slots = court_slots(&bounds, &[(630, 700)], false);
        let free: Vec<bool> = slots.iter().map(|s| s.available).collect();
        assert_eq!(free, vec![false, false, true, true, true]);
        assert!(court_slots(&bounds, &[], true).iter().all(|s| !s.available));
    }

    proptest! {
        #[test]
        fn slots_are_contiguous_sized_and_inside_opening(
            opens in 0u32..1200, length in 0u32..1000, size in 15u32..=240,
        ) {
            let closes = (opens + length).min(24 * 60);
            let bounds = slot_bounds(&[(opens, closes)], size);
            prop_assert_eq!(bounds.len() as u32, closes.saturating_sub(opens) / size);
            for (i, &(s, e)) in bounds.iter().enumerate() {
                prop_assert_eq!(e - s, size);
                prop_assert_eq!(s, opens + i as u32 * size);
                prop_assert!(e <= closes);
            }
        }

        #[test]
        fn a_slot_is_free_exactly_when_no_busy_interval_overlaps_it(
            size in 15u32..=240,
            busy in proptest::collection::vec((480u32..1300, 15u32..200), 0..6),
        ) {
            let busy: Vec<(u32, u32)> = busy.into_iter().map(|(s, l)| (s, s + l)).collect();
            let bounds = slot_bounds(&[(480, 1380)], size);
            for slot in court_slots(&bounds, &busy, false) {
                let clash = busy.iter().any(|&(bs, be)| (slot.start..slot.end).any(|m| bs <= m && m < be));
                prop_assert_eq!(slot.available, !clash);
            }
        }
    }
}
