//! The whole-response cache: the serialized `data` of a repeated identical query, served without
//! parsing, validating, resolving or serializing anything.
//!
//! Its price is the risk of serving a response to someone who may no longer see it, or after its
//! data changed. Both are closed the same way the value cache closes them:
//!
//! - **Freshness**: while the query runs, every cached value it reads records its tags and their
//!   generations into a [`Recording`] (a task-local). The stored response carries all of them, so
//!   any invalidation of any source makes it unreadable, and it is fresh only as long as its
//!   least fresh source. A query that read anything *not* through the cache (a DataLoader's SQL,
//!   a stale-while-revalidate or stale-if-error value, a bypassed cache) is not stored at all.
//! - **Authorization**: every access decision the resolvers took (club visibility and level, the
//!   club's "today") is stored with the bytes as a [`Requirement`] and re-checked against the
//!   caller's current memberships on every hit. Keys also carry the caller's user id, so a
//!   response is never even looked up for another user.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, Ordering},
    Arc, Mutex,
};

use chrono::NaiveDate;

use super::{entry::Entry, keys, Cache, CacheKey, Kind, Outcome};
use crate::domain::access::{club_access, decide, ClubAccess, ClubScope, Decision, Viewer};

/// An authorization decision (or clock reading) a response depended on; re-checked on every hit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// The caller is this user.
    User(i64),
    /// Asked whether the caller may use this club at `needed` level, the rules decided this.
    Club {
        /// The club as the access rules saw it.
        scope: ClubScope,
        /// The level asked for.
        needed: ClubAccess,
        /// The decision.
        decision: Decision,
    },
    /// "Today" in this time zone was this date (default periods and dates depend on it).
    Today {
        /// IANA zone name of the club.
        timezone: String,
        /// The date it was.
        date: NaiveDate,
    },
}

/// Whether every requirement still holds for `viewer` (and the clock, through `today`).
pub fn requirements_hold(
    requirements: &[Requirement],
    viewer: &Viewer,
    today: impl Fn(&str) -> NaiveDate,
) -> bool {
    requirements.iter().all(|requirement| match requirement {
        Requirement::User(id) => viewer.user_id == *id,
        Requirement::Club {
            scope,
            needed,
            decision,
        } => decide(club_access(viewer, *scope), *needed) == *decision,
        Requirement::Today { timezone, date } => today(timezone) == *date,
    })
}

/// A stored response: the requirements, the operation's names, and the HTTP body, shared (never
/// copied) by every hit.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    /// Re-checked on every hit.
    pub requirements: Vec<Requirement>,
    /// The monitoring key of the operation (its name, or its root fields).
    pub operation: String,
    /// The operation's name in the document (may be empty), for metrics and spans.
    pub name: String,
    /// The cached kinds the response was built from (reported as in-process hits on a hit).
    pub kinds: Vec<String>,
    /// The whole JSON body (`{"data": …}`, with `extensions.cache` where the caller sees it);
    /// for a shared answer, the field's JSON value.
    pub body: bytes::Bytes,
    /// A shared answer's normalised field text (`graphql::share`), compared on every hit: the
    /// key holds only its 64-bit hash, and a crafted collision must not serve another field.
    /// Empty for whole responses (their key includes the user: a collision is the user's own).
    pub text: Box<str>,
}

/// What a query's answer depended on while it ran: the cached values it read (tags and
/// generations), the access decisions it took, and whether it read anything untracked.
#[derive(Debug)]
pub struct Recording {
    sources: Mutex<Vec<(String, u64)>>,
    requirements: Mutex<Vec<Requirement>>,
    fresh_until_ms: AtomicU64,
    spoiled: AtomicBool,
    /// The request's recording, when this one is a root field's (`Recording::within`): what the
    /// field reads, the request reads too.
    parent: Option<Arc<Recording>>,
}

impl Default for Recording {
    fn default() -> Self {
        Recording {
            sources: Mutex::new(Vec::new()),
            requirements: Mutex::new(Vec::new()),
            fresh_until_ms: AtomicU64::new(u64::MAX),
            spoiled: AtomicBool::new(false),
            parent: None,
        }
    }
}

impl Recording {
    /// The recording of one root field of a request: everything noted in it is noted in the
    /// request's `parent` as well.
    pub fn within(parent: Arc<Recording>) -> Recording {
        Recording {
            parent: Some(parent),
            ..Recording::default()
        }
    }

    /// Marks the response as not storable (it read something the cache cannot track: SQL
    /// outside a cache load, a stale or bypassed value).
    pub fn spoil(&self) {
        self.spoiled.store(true, Ordering::Relaxed);
        if let Some(parent) = &self.parent {
            parent.spoil();
        }
    }

    /// Notes an access decision the answer depends on.
    pub fn require(&self, requirement: Requirement) {
        if let Some(parent) = &self.parent {
            parent.require(requirement.clone());
        }
        let mut requirements = self.requirements.lock().expect("requirements lock");
        if !requirements.contains(&requirement) {
            requirements.push(requirement);
        }
    }

    /// The access decisions noted so far.
    pub fn requirements(&self) -> Vec<Requirement> {
        self.requirements.lock().expect("requirements lock").clone()
    }

    /// Whether something untrackable was read.
    pub fn is_spoiled(&self) -> bool {
        self.spoiled.load(Ordering::Relaxed)
    }

    /// The sources' tags with the generations they were read at (`None` when one tag was seen
    /// at two generations: the response mixes before and after an invalidation), and the time
    /// the least fresh source stops being fresh.
    pub(crate) fn sources(&self) -> Option<(Vec<String>, Vec<u64>, u64)> {
        let mut sources = self.sources.lock().expect("recording lock").clone();
        sources.sort();
        sources.dedup();
        if sources.windows(2).any(|w| w[0].0 == w[1].0) {
            return None;
        }
        let (tags, generations) = sources.into_iter().unzip();
        Some((
            tags,
            generations,
            self.fresh_until_ms.load(Ordering::Relaxed),
        ))
    }

    fn note(&self, tags: &[String], generations: &[u64], fresh_until_ms: u64) {
        if let Some(parent) = &self.parent {
            parent.note(tags, generations, fresh_until_ms);
        }
        let mut sources = self.sources.lock().expect("recording lock");
        sources.extend(tags.iter().cloned().zip(generations.iter().copied()));
        self.fresh_until_ms
            .fetch_min(fresh_until_ms, Ordering::Relaxed);
    }
}

tokio::task_local! {
    static RECORDING: Arc<Recording>;
    static IN_LOAD: ();
}

/// Runs `future` (a query's execution) recording what it reads from the cache.
pub async fn record<F: std::future::Future>(recording: Arc<Recording>, future: F) -> F::Output {
    RECORDING.scope(recording, future).await
}

/// Runs a cache load: SQL inside it is tracked by the entry it fills.
pub(crate) async fn in_load<F: std::future::Future>(future: F) -> F::Output {
    IN_LOAD.scope((), future).await
}

/// Whether the current task is filling a cache entry (its SQL is tracked by tags).
pub fn in_cache_load() -> bool {
    IN_LOAD.try_with(|_| ()).is_ok()
}

/// Notes a cache entry the current query used.
pub(crate) fn note(tags: &[String], generations: &[u64], fresh_until_ms: u64) {
    let _ = RECORDING.try_with(|r| r.note(tags, generations, fresh_until_ms));
}

/// Notes an access decision in the recording in scope (a root field's, or the request's);
/// false when none is (the caller then notes it in the request's).
pub(crate) fn require_in_scope(requirement: &Requirement) -> bool {
    RECORDING
        .try_with(|r| r.require(requirement.clone()))
        .is_ok()
}

/// Notes that the current query used something untracked.
pub(crate) fn spoil() {
    let _ = RECORDING.try_with(|r| r.spoil());
}

impl Cache {
    /// Whether whole responses are cached (and served) right now.
    pub fn response_cache_on(&self) -> bool {
        let settings = &self.inner.settings;
        settings.enabled && settings.response_cache && self.l1_active()
    }

    /// Whether shared answers are kept (and served) right now.
    pub fn shared_answers_on(&self) -> bool {
        self.response_cache_on() && self.inner.settings.shared_answers
    }

    fn answers_enabled(&self, kind: Kind) -> bool {
        let settings = &self.inner.settings;
        settings.enabled
            && settings.response_cache
            && (kind != Kind::Shared || settings.shared_answers)
    }

    /// A stored whole response (`Kind::Response`) or shared answer (`Kind::Shared`) for `key`
    /// whose every source is still current and fresh.
    pub fn response_get(&self, key: &CacheKey) -> Option<Arc<StoredResponse>> {
        if !self.answers_enabled(key.kind) {
            return None;
        }
        let entry = self.l1_get(key.as_str())?;
        if !self.is_current(&entry) || !entry.is_fresh(self.inner.clock.now_ms()) {
            return None;
        }
        entry.response.clone()
    }

    /// Stores a whole response or a shared answer built from what `recording` saw; false when
    /// it cannot be stored (something untracked was read, no cached source at all, or a source
    /// already changed). Its life is capped by its kind's `ttl`.
    pub fn response_put(
        &self,
        key: &CacheKey,
        recording: &Recording,
        stored: StoredResponse,
        epoch: u64,
    ) -> bool {
        if !self.answers_enabled(key.kind) || recording.is_spoiled() || self.epoch() != epoch {
            return false;
        }
        let Some((mut tags, mut generations, fresh_until_ms)) = recording.sources() else {
            return false;
        };
        let now = self.inner.clock.now_ms();
        let ttl = self.inner.settings.for_kind(key.kind).ttl;
        let fresh_until_ms = fresh_until_ms.min(now + ttl.as_millis() as u64);
        if tags.is_empty() || fresh_until_ms <= now {
            return false;
        }
        let kind_tag = keys::tags::kind(key.kind);
        generations.push(
            self.inner
                .generations
                .for_load(std::slice::from_ref(&kind_tag))[0],
        );
        tags.push(kind_tag);
        let entry = Entry {
            fresh_until_ms,
            stale_until_ms: fresh_until_ms,
            tags,
            generations,
            value: Vec::new(),
            response: Some(Arc::new(stored)),
        };
        if !self.is_current(&entry) {
            return false;
        }
        self.l1_put(key.as_str(), Arc::new(entry));
        true
    }

    /// Counts a whole-response or shared-answer lookup (hits and misses) for metrics and
    /// status.
    pub fn record_answer(&self, kind: Kind, outcome: Outcome) {
        self.inner.metrics.record(kind, outcome);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClubRole, OrgRole};

    fn scope(club_id: i64, organization_id: i64) -> ClubScope {
        ClubScope {
            club_id,
            organization_id,
            active: true,
        }
    }

    #[test]
    fn requirements_follow_the_callers_current_memberships_and_the_date() {
        let today = NaiveDate::from_ymd_opt(2026, 11, 22).unwrap();
        let manager = Viewer {
            user_id: 7,
            is_superuser: false,
            org_roles: vec![],
            club_roles: vec![(1, 10, ClubRole::Manager)],
        };
        let requirements = vec![
            Requirement::User(7),
            Requirement::Club {
                scope: scope(1, 10),
                needed: ClubAccess::Manager,
                decision: Decision::Granted,
            },
            Requirement::Club {
                scope: scope(2, 10),
                needed: ClubAccess::Player,
                decision: Decision::Invisible,
            },
            Requirement::Today {
                timezone: "Europe/Madrid".into(),
                date: today,
            },
        ];
        assert!(requirements_hold(&requirements, &manager, |_| today));
        // Another user, a demoted manager, a new membership, another day: all fail.
        let other = Viewer {
            user_id: 8,
            ..manager.clone()
        };
        assert!(!requirements_hold(&requirements, &other, |_| today));
        // Without the user, the decisions alone: another manager of the club holds them, one
        // of its players does not (the level asked was MANAGER).
        let shared = &requirements[1..];
        assert!(requirements_hold(shared, &other, |_| today));
        let player = Viewer {
            club_roles: vec![(1, 10, ClubRole::Player)],
            ..other.clone()
        };
        assert!(!requirements_hold(shared, &player, |_| today));
        let demoted = Viewer {
            club_roles: vec![(1, 10, ClubRole::Player)],
            ..manager.clone()
        };
        assert!(!requirements_hold(&requirements, &demoted, |_| today));
        let promoted = Viewer {
            org_roles: vec![(10, OrgRole::Admin)],
            ..manager.clone()
        };
        assert!(!requirements_hold(&requirements, &promoted, |_| today));
        assert!(!requirements_hold(&requirements, &manager, |_| today
            .succ_opt()
            .unwrap()));
    }

    #[test]
    fn a_tag_read_at_two_generations_makes_the_recording_unusable() {
        let recording = Recording::default();
        recording.note(&["club:1".into(), "all".into()], &[3, 0], 500);
        recording.note(&["club:1".into(), "user:7".into()], &[3, 1], 400);
        let (tags, generations, fresh) = recording.sources().unwrap();
        assert_eq!(tags, ["all", "club:1", "user:7"]);
        assert_eq!(generations, [0, 3, 1]);
        assert_eq!(fresh, 400);
        recording.note(&["club:1".into()], &[4], 900);
        assert!(recording.sources().is_none());
    }
}
