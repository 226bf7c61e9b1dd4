//! The local mirror of tag generations, bounded. An entry is current when every tag it records
//! is mirrored at the generation it recorded; a tag that is not mirrored makes it not current,
//! so dropping tags from the mirror can cost a re-check against Redis (or a reload), never a
//! stale answer. When the mirror is full it starts over: O(1), and it needs no per-tag order.
//!
//! With Redis, generations are Redis's counters: the mirror only ever raises a tag (a late
//! reply must not undo a newer message), and a counter Redis lost restarts from its clock, above
//! anything mirrored (`redis_tier::BUMP_SCRIPT`). Without Redis, generations come from a
//! process-wide counter that starts at the clock and only grows, so a tag dropped and seen again
//! never takes a value an old entry recorded.

use std::collections::HashMap;

/// Tag → generation, at most `max` tags.
#[derive(Debug)]
pub(super) struct Mirror {
    tags: HashMap<String, u64>,
    max: usize,
    /// Generations come from Redis (else from `clock`).
    shared: bool,
    clock: u64,
    /// Times the mirror was full and started over.
    pub(super) resets: u64,
}

impl Mirror {
    pub(super) fn new(max: usize, shared: bool) -> Mirror {
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(1);
        Mirror {
            tags: HashMap::new(),
            max: max.max(1),
            shared,
            clock: now_us,
            resets: 0,
        }
    }

    /// Tags mirrored.
    pub(super) fn len(&self) -> usize {
        self.tags.len()
    }

    /// Whether every tag is mirrored at the generation recorded beside it.
    pub(super) fn is_current(&self, tags: &[String], recorded: &[u64]) -> bool {
        tags.len() == recorded.len()
            && tags
                .iter()
                .zip(recorded)
                .all(|(tag, generation)| self.tags.get(tag) == Some(generation))
    }

    /// The generations to record for a load that starts now. A tag not mirrored yet is taken in:
    /// at 0 with Redis (what Redis answers for a tag never invalidated; a higher one seen later
    /// raises it), or at a fresh generation without.
    pub(super) fn for_load(&mut self, tags: &[String]) -> Vec<u64> {
        tags.iter()
            .map(|tag| match self.tags.get(tag) {
                Some(generation) => *generation,
                None => {
                    let generation = if self.shared { 0 } else { self.tick() };
                    self.insert(tag.clone(), generation);
                    generation
                }
            })
            .collect()
    }

    /// Raises tags to generations read from Redis (never lowers them).
    pub(super) fn observe(&mut self, tags: &[String], seen: &[u64]) {
        for (tag, generation) in tags.iter().zip(seen) {
            match self.tags.get_mut(tag) {
                Some(current) => *current = (*current).max(*generation),
                None => self.insert(tag.clone(), *generation),
            }
        }
    }

    /// Raises tags to generations another replica published. Tags not mirrored are left out:
    /// no entry of this process can be current on them, and taking them in would let other
    /// replicas' traffic fill this mirror.
    pub(super) fn apply_published(&mut self, tags: &[String], published: &[u64]) {
        for (tag, generation) in tags.iter().zip(published) {
            if let Some(current) = self.tags.get_mut(tag) {
                *current = (*current).max(*generation);
            }
        }
    }

    /// Moves tags past every generation recorded so far (an invalidation made here).
    pub(super) fn bump(&mut self, tags: &[String]) {
        for tag in tags {
            let next = if self.shared {
                self.tags.get(tag).map_or(1, |g| g + 1)
            } else {
                self.tick()
            };
            match self.tags.get_mut(tag) {
                Some(current) => *current = next,
                None => self.insert(tag.clone(), next),
            }
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn insert(&mut self, tag: String, generation: u64) {
        if self.tags.len() >= self.max {
            self.tags.clear();
            self.resets += 1;
            tracing::info!(
                max_tags = self.max,
                "tag generation mirror full: starting over (entries are re-checked)"
            );
        }
        self.tags.insert(tag, generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn the_mirror_stays_bounded_and_a_dropped_tag_never_makes_an_old_entry_current() {
        for shared in [false, true] {
            let mut mirror = Mirror::new(3, shared);
            let club = tags(&["club:1"]);
            let recorded = mirror.for_load(&club);
            assert!(mirror.is_current(&club, &recorded));
            mirror.bump(&club);
            assert!(!mirror.is_current(&club, &recorded));
            let after_bump = mirror.for_load(&club);
            // A client asking about many dates fills the mirror: it starts over, bounded.
            for day in 0..10 {
                mirror.for_load(&tags(&[&format!("club:1:slots:2026-01-{day:02}")]));
                assert!(mirror.len() <= 3);
            }
            assert!(mirror.resets > 0);
            // Not mirrored any more: neither the old nor the newer entry is current.
            assert!(!mirror.is_current(&club, &recorded));
            assert!(!mirror.is_current(&club, &after_bump));
            let again = mirror.for_load(&club);
            if !shared {
                // Without Redis the tag comes back at a generation never recorded before.
                assert!(!mirror.is_current(&club, &recorded));
                assert_ne!(again, recorded);
            }
        }
    }

    #[test]
    fn published_generations_only_raise_mirrored_tags() {
        let mut mirror = Mirror::new(10, true);
        let club = tags(&["club:1"]);
        mirror.apply_published(&club, &[7]);
        assert_eq!(mirror.len(), 0);
        let recorded = mirror.for_load(&club);
        assert_eq!(recorded, vec![0]);
        mirror.apply_published(&club, &[7]);
        assert!(mirror.is_current(&club, &[7]));
        // A late, lower answer does not undo it.
        mirror.observe(&club, &[3]);
        assert!(mirror.is_current(&club, &[7]));
    }
}
