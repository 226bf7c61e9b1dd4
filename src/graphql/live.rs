//! Shared live topics. Subscribers of the same subscription (same document, operation name and
//! variables) on one replica share one topic: one read and one rendering per change, whatever
//! their number (`pipeline::live` runs it). The topic's reads run on behalf of no one
//! (`RequestContext::for_topic`); what each subscriber's access is decided on is noted here
//! ([`TopicNotes`]), and checked per subscriber on every delivery. A selection that depends on
//! the caller makes the topic personal: its subscribers then run their own.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, Weak,
    },
    time::Instant,
};

use tokio::sync::watch;

use crate::domain::access::{ClubAccess, ClubScope};

/// What a topic's reads noted for the subscribers' access checks.
#[derive(Debug, Default)]
pub struct TopicNotes {
    club: Mutex<Option<(ClubScope, ClubAccess)>>,
    personal: AtomicBool,
    woke: Mutex<Option<Instant>>,
}

impl TopicNotes {
    /// The club read, and the level a subscriber needs in it.
    pub fn note_club(&self, scope: ClubScope, needed: ClubAccess) {
        *self.club.lock().unwrap_or_else(|e| e.into_inner()) = Some((scope, needed));
    }

    /// The club last read (none before the first read).
    pub fn club(&self) -> Option<(ClubScope, ClubAccess)> {
        *self.club.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A field asked for the caller: the rendering cannot be shared.
    pub fn make_personal(&self) {
        self.personal.store(true, Ordering::Release);
    }

    /// Whether a field asked for the caller.
    pub fn is_personal(&self) -> bool {
        self.personal.load(Ordering::Acquire)
    }

    /// When the change that the coming event answers was heard (kept for the first one).
    pub fn woke(&self) {
        let mut woke = self.woke.lock().unwrap_or_else(|e| e.into_inner());
        woke.get_or_insert_with(Instant::now);
    }

    /// Takes the instant of [`TopicNotes::woke`].
    pub fn take_woke(&self) -> Option<Instant> {
        self.woke.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// What a topic publishes; subscribers see only the newest (a slow one skips to it).
#[derive(Debug)]
pub enum TopicEvent {
    /// One rendered event.
    Rendered {
        /// 1, 2, …: a subscriber that skips numbers was coalesced.
        seq: u64,
        /// The event's JSON (`{"data": …}`), rendered once.
        payload: Arc<str>,
        /// The club it read and the level a subscriber needs there.
        club: Option<(ClubScope, ClubAccess)>,
        /// When the change it answers was heard.
        woke: Option<Instant>,
    },
    /// The selection depends on the caller: every subscriber runs its own.
    Personal,
    /// The topic's stream ended, with its last event (a subscriber that has not seen it yet
    /// still gets it: often the error that ended the stream).
    Ended(Option<Arc<TopicEvent>>),
}

/// One running topic; its producer stops when the last subscriber lets go.
pub struct Topic {
    /// The newest event (`None` before the first).
    pub events: watch::Receiver<Option<Arc<TopicEvent>>>,
    _producer: AbortOnDrop,
}

/// Aborts a task when dropped: a topic's producer, a personal stream's task.
pub struct AbortOnDrop(pub tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The running topics of this replica, by key, and the subscribers' own change feeds.
#[derive(Default)]
pub struct Topics {
    running: Mutex<HashMap<String, Weak<Topic>>>,
    /// Per subscribed user, a feed that ticks when a change concerns that user (`user:U`,
    /// `all`, everything): one task reads the cache's changes for all of them, so a change
    /// wakes only the subscribers it concerns.
    users: Mutex<HashMap<i64, Weak<watch::Sender<()>>>>,
    users_fed: AtomicBool,
}

impl Topics {
    /// The topic of `key`, started with `start` (given the sender its producer publishes on)
    /// when none runs.
    pub fn join(
        &self,
        key: &str,
        start: impl FnOnce(watch::Sender<Option<Arc<TopicEvent>>>) -> tokio::task::AbortHandle,
    ) -> Arc<Topic> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(topic) = running.get(key).and_then(Weak::upgrade) {
            // An ended topic (its last event an error) starts over for a newcomer.
            let ended = matches!(topic.events.borrow().as_deref(), Some(TopicEvent::Ended(_)));
            if !ended {
                return topic;
            }
        }
        running.retain(|_, topic| topic.strong_count() > 0);
        let (sender, events) = watch::channel(None);
        let topic = Arc::new(Topic {
            events,
            _producer: AbortOnDrop(start(sender)),
        });
        running.insert(key.to_string(), Arc::downgrade(&topic));
        topic
    }

    /// The feed of changes concerning `user`; the sender is kept by the subscriber (the feed
    /// ends with its last one). `true` the first time any feed is asked for: the caller then
    /// starts the task that calls [`Topics::notify`].
    pub fn user_feed(&self, user: i64) -> (Arc<watch::Sender<()>>, watch::Receiver<()>, bool) {
        let first = !self.users_fed.swap(true, Ordering::AcqRel);
        let mut users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = users.get(&user).and_then(Weak::upgrade) {
            let receiver = sender.subscribe();
            return (sender, receiver, first);
        }
        users.retain(|_, feed| feed.strong_count() > 0);
        let (sender, receiver) = watch::channel(());
        let sender = Arc::new(sender);
        users.insert(user, Arc::downgrade(&sender));
        (sender, receiver, first)
    }

    /// Ticks the feeds a change concerns.
    pub fn notify(&self, change: &crate::cache::Change) {
        let users = self.users.lock().unwrap_or_else(|e| e.into_inner());
        let everyone = match change {
            crate::cache::Change::Everything | crate::cache::Change::Resumed => true,
            crate::cache::Change::Tags(tags) => {
                tags.iter().any(|t| t == crate::cache::keys::tags::ALL)
            }
        };
        if everyone {
            for feed in users.values().filter_map(Weak::upgrade) {
                feed.send_replace(());
            }
            return;
        }
        if let crate::cache::Change::Tags(tags) = change {
            for tag in tags.iter() {
                let user = tag
                    .strip_prefix("user:")
                    .and_then(|id| id.parse::<i64>().ok());
                if let Some(feed) = user.and_then(|id| users.get(&id)).and_then(Weak::upgrade) {
                    feed.send_replace(());
                }
            }
        }
    }
}
