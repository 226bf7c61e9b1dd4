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
//!
//! [`Generations`] adds the channel state around the mirror: without the invalidation channel a
//! replica cannot know what it missed, so L1 is flushed and kept off until it is subscribed
//! again, and an epoch tells a load that started before a change not to keep what it loaded.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Mutex,
    },
};

use super::{entry::Entry, shared::TierEvents, L1};
use crate::clock::Clock;

/// What became stale, as every replica hears it (its own invalidations, other replicas' through
/// the channel, the outbox's through `Cache::invalidate`): the feed live subscriptions follow.
#[derive(Debug, Clone)]
pub enum Change {
    /// These tags were bumped.
    Tags(std::sync::Arc<[String]>),
    /// Anything may have changed (L1 flushed: a flush, the channel lost, Redis back).
    Everything,
    /// The invalidation channel is back after it was lost: anything may have changed while this
    /// replica could not hear, so live subscriptions send their current value even when it
    /// looks unchanged (they were stale meanwhile).
    Resumed,
}

/// Changes buffered per listener before it lags (and a lagging listener re-reads everything).
const CHANGES_BUFFER: usize = 4096;

/// Tag generations and the invalidation channel's state, shared by the walk and the Redis tier.
pub(super) struct Generations {
    mirror: Mutex<Mirror>,
    /// The in-process tier, flushed when invalidations may have been missed.
    l1: L1,
    /// L1 is configured on.
    l1_enabled: bool,
    /// Off while the invalidation channel is down (or when configured off).
    l1_on: AtomicBool,
    /// Bumped whenever the invalidation channel drops or comes back: a load that started
    /// before may have missed invalidations nobody can replay to it, so it is not kept in L1.
    epoch: AtomicU64,
    /// Every change, for live subscriptions (no listener: nothing is kept).
    changes: tokio::sync::broadcast::Sender<Change>,
    /// The channel was lost and has not come back yet.
    lost: AtomicBool,
}

impl Generations {
    /// `shared`: generations come from Redis, and L1 waits for the channel before serving.
    pub(super) fn new(
        max_tags: usize,
        l1: L1,
        l1_enabled: bool,
        shared: bool,
        clock: &Clock,
    ) -> Generations {
        Generations {
            mirror: Mutex::new(Mirror::new(max_tags, shared, clock.now_micros())),
            l1,
            l1_enabled,
            l1_on: AtomicBool::new(l1_enabled && !shared),
            epoch: AtomicU64::new(0),
            changes: tokio::sync::broadcast::channel(CHANGES_BUFFER).0,
            lost: AtomicBool::new(false),
        }
    }

    fn mirror(&self) -> std::sync::MutexGuard<'_, Mirror> {
        self.mirror.lock().expect("generations lock")
    }

    /// Whether L1 serves right now.
    pub(super) fn l1_active(&self) -> bool {
        self.l1_on.load(Ordering::Acquire)
    }

    /// The invalidation-channel epoch; take it before a load starts.
    pub(super) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Drops every L1 entry (after a possible loss of invalidations).
    pub(super) fn flush_l1(&self) {
        self.flush_l1_telling(Change::Everything);
    }

    fn flush_l1_telling(&self, change: Change) {
        self.l1.invalidate_all();
        let _ = self.changes.send(change);
    }

    /// A listener of every change from now on.
    pub(super) fn listen(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    /// Tells the listeners these tags changed.
    pub(super) fn announce(&self, tags: &[String]) {
        if self.changes.receiver_count() > 0 {
            let _ = self.changes.send(Change::Tags(tags.into()));
        }
    }

    /// Whether every tag of the entry is still at the generation the entry recorded.
    pub(super) fn is_current(&self, entry: &Entry) -> bool {
        self.mirror().is_current(&entry.tags, &entry.generations)
    }

    /// The generations a load starting now records.
    pub(super) fn for_load(&self, tags: &[String]) -> Vec<u64> {
        self.mirror().for_load(tags)
    }

    /// Raises the local mirror to generations read from Redis (never lowers it).
    pub(super) fn observe(&self, tags: &[String], seen: &[u64]) {
        self.mirror().observe(tags, seen);
    }

    /// Moves tags past every generation recorded here (an invalidation made here).
    pub(super) fn bump(&self, tags: &[String]) {
        self.mirror().bump(tags);
        self.announce(tags);
    }

    /// Tags mirrored, and how often the full mirror started over.
    pub(super) fn usage(&self) -> (usize, u64) {
        let mirror = self.mirror();
        (mirror.len(), mirror.resets)
    }
}

impl TierEvents for Generations {
    fn recovered(&self) {
        self.flush_l1();
    }

    /// What was missed is unknown, so start over.
    fn channel_up(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let resumed = self.lost.swap(false, Ordering::AcqRel);
        self.flush_l1_telling(if resumed {
            Change::Resumed
        } else {
            Change::Everything
        });
        self.l1_on.store(self.l1_enabled, Ordering::Release);
        tracing::info!("cache invalidation channel subscribed; L1 on");
    }

    /// Flush and stop serving from L1 until the channel is back.
    fn channel_down(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.lost.store(true, Ordering::Release);
        if self.l1_on.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                "cache invalidation channel lost; L1 flushed and off until resubscribed"
            );
        }
        self.flush_l1();
    }

    fn published(&self, tags: &[String], generations: &[u64]) {
        self.mirror().apply_published(tags, generations);
        self.announce(tags);
    }
}

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
    /// `now_us`: the clock in microseconds, where the process-wide counter starts.
    pub(super) fn new(max: usize, shared: bool, now_us: u64) -> Mirror {
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
            let mut mirror = Mirror::new(3, shared, Clock::system().now_micros());
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
        let mut mirror = Mirror::new(10, true, Clock::system().now_micros());
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
