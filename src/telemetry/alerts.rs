//! The alert history of the monitoring page: every threshold breach the gateway noticed, with its
//! start, end and peak, in a bounded ring. What counts as a breach is decided by the caller
//! (`http::monitoring`'s rules); this only remembers.

use std::{collections::VecDeque, sync::Mutex};

use serde::Serialize;

/// A threshold breached now.
#[derive(Debug, Clone)]
pub struct Breach {
    /// The rule: `slow_operation`, `error_rate`, `cache_hit_rate`, `redis_degraded`.
    pub rule: &'static str,
    /// What breached it: an operation, a cache, or `redis`.
    pub subject: String,
    /// The value measured now.
    pub value: f64,
    /// The threshold it crossed.
    pub threshold: f64,
    /// Lower values are worse (a hit rate): the peak is then the lowest value seen.
    pub lower_is_worse: bool,
    /// What an operator reads.
    pub detail: String,
}

/// One breach from its start to its end.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// Increasing id.
    pub id: u64,
    /// The rule breached.
    pub rule: &'static str,
    /// What breached it.
    pub subject: String,
    /// The threshold.
    pub threshold: f64,
    /// The worst value while it lasted.
    pub peak: f64,
    /// The latest value (the last one while breached).
    pub last: f64,
    /// Whether it still holds.
    pub active: bool,
    /// When it was first seen (RFC 3339).
    pub started_at: String,
    /// When it was first seen to hold no more; null while active.
    pub ended_at: Option<String>,
    /// The latest detail.
    pub detail: String,
}

/// The last `capacity` alerts.
pub struct Alerts {
    ring: Mutex<(u64, VecDeque<Alert>)>,
    capacity: usize,
}

impl Alerts {
    /// A history of at most `capacity` alerts (the oldest ended ones go first).
    pub fn new(capacity: usize) -> Alerts {
        Alerts {
            ring: Mutex::new((0, VecDeque::new())),
            capacity: capacity.max(1),
        }
    }

    /// Takes in what breaches now: new breaches start alerts, continuing ones update their peak,
    /// active alerts not breached any more end.
    pub fn observe(&self, breaches: &[Breach], now: &str) {
        let Ok(mut guard) = self.ring.lock() else {
            return;
        };
        let (next_id, ring) = &mut *guard;
        for alert in ring.iter_mut().filter(|a| a.active) {
            if !breaches
                .iter()
                .any(|b| b.rule == alert.rule && b.subject == alert.subject)
            {
                alert.active = false;
                alert.ended_at = Some(now.to_string());
            }
        }
        for breach in breaches {
            let open = ring
                .iter_mut()
                .find(|a| a.active && a.rule == breach.rule && a.subject == breach.subject);
            if let Some(alert) = open {
                let worse = if breach.lower_is_worse {
                    breach.value < alert.peak
                } else {
                    breach.value > alert.peak
                };
                if worse {
                    alert.peak = breach.value;
                }
                alert.last = breach.value;
                alert.detail.clone_from(&breach.detail);
                continue;
            }
            *next_id += 1;
            ring.push_back(Alert {
                id: *next_id,
                rule: breach.rule,
                subject: breach.subject.clone(),
                threshold: breach.threshold,
                peak: breach.value,
                last: breach.value,
                active: true,
                started_at: now.to_string(),
                ended_at: None,
                detail: breach.detail.clone(),
            });
            if ring.len() > self.capacity {
                let evict = ring.iter().position(|a| !a.active).unwrap_or(0);
                ring.remove(evict);
            }
        }
    }

    /// Every alert kept, newest first.
    pub fn history(&self) -> Vec<Alert> {
        self.ring
            .lock()
            .map(|guard| guard.1.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breach(rule: &'static str, subject: &str, value: f64) -> Breach {
        Breach {
            rule,
            subject: subject.into(),
            value,
            threshold: 1.0,
            lower_is_worse: rule == "cache_hit_rate",
            detail: String::new(),
        }
    }

    #[test]
    fn a_breach_starts_keeps_its_peak_and_ends() {
        let alerts = Alerts::new(10);
        alerts.observe(&[breach("slow_operation", "q", 3.0)], "t1");
        alerts.observe(&[breach("slow_operation", "q", 5.0)], "t2");
        alerts.observe(&[breach("slow_operation", "q", 4.0)], "t3");
        let open = &alerts.history()[0];
        assert!(open.active && open.ended_at.is_none());
        assert_eq!((open.peak, open.last), (5.0, 4.0));
        assert_eq!(open.started_at, "t1");
        alerts.observe(&[], "t4");
        let closed = &alerts.history()[0];
        assert!(!closed.active);
        assert_eq!(closed.ended_at.as_deref(), Some("t4"));
        assert_eq!(closed.peak, 5.0);
        // The same breach again is a new alert.
        alerts.observe(&[breach("slow_operation", "q", 2.0)], "t5");
        assert_eq!(alerts.history().len(), 2);
        // Lower is worse for hit rates.
        alerts.observe(&[breach("cache_hit_rate", "all", 0.5)], "t6");
        alerts.observe(&[breach("cache_hit_rate", "all", 0.3)], "t7");
        alerts.observe(&[breach("cache_hit_rate", "all", 0.6)], "t8");
        assert_eq!(alerts.history()[0].peak, 0.3);
    }

    #[test]
    fn the_ring_is_bounded_and_drops_ended_alerts_first() {
        let alerts = Alerts::new(3);
        alerts.observe(&[breach("redis_degraded", "redis", 1.0)], "t0");
        for i in 0..10 {
            let subject = format!("op{i}");
            alerts.observe(
                &[
                    breach("redis_degraded", "redis", 1.0),
                    breach("slow_operation", &subject, 1.0),
                ],
                "t",
            );
        }
        let history = alerts.history();
        assert_eq!(history.len(), 3);
        // The long-running Redis alert is still there, and the newest operation's.
        assert!(history
            .iter()
            .any(|a| a.rule == "redis_degraded" && a.active));
        assert_eq!(history[0].subject, "op9");
    }
}
