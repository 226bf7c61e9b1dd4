//! The alert history of the monitoring page: every threshold breach the gateway noticed, with its
//! start, end and peak, in a bounded ring. What counts as a breach is decided by the caller
//! ([`breaches`], run by `http::monitoring`); the ring only remembers.
//!
//! A breach of the same rule and subject within `REOPEN_WITHIN` of its alert's end reopens that
//! alert instead of starting another, so a condition flapping around its threshold (or a client
//! making it flap) is one alert, not a new one per flap. An alert still breached is never evicted:
//! when every kept alert is active, a new breach is counted as dropped instead.

use std::{collections::VecDeque, sync::Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::monitoring::WindowStats;
use crate::config::TelemetrySettings;

/// A breach this soon after its alert ended reopens it.
pub const REOPEN_WITHIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

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
    /// Times it ended and was breached again within `REOPEN_WITHIN`.
    pub reopened: u64,
    #[serde(skip)]
    ended: Option<DateTime<Utc>>,
}

/// What the ring holds.
#[derive(Default)]
struct Ring {
    next_id: u64,
    alerts: VecDeque<Alert>,
    dropped: u64,
}

/// The last `capacity` alerts.
pub struct Alerts {
    ring: Mutex<Ring>,
    capacity: usize,
}

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Alerts {
    /// A history of at most `capacity` alerts (the oldest ended ones go first).
    pub fn new(capacity: usize) -> Alerts {
        Alerts {
            ring: Mutex::new(Ring::default()),
            capacity: capacity.max(1),
        }
    }

    /// Takes in what breaches now: new breaches start (or reopen) alerts, continuing ones update
    /// their peak, active alerts not breached any more end.
    pub fn observe(&self, breaches: &[Breach], now: DateTime<Utc>) {
        let Ok(mut guard) = self.ring.lock() else {
            return;
        };
        let ring = &mut *guard;
        for alert in ring.alerts.iter_mut().filter(|a| a.active) {
            if !breaches
                .iter()
                .any(|b| b.rule == alert.rule && b.subject == alert.subject)
            {
                alert.active = false;
                alert.ended = Some(now);
                alert.ended_at = Some(rfc3339(now));
            }
        }
        for breach in breaches {
            let same = |a: &Alert| a.rule == breach.rule && a.subject == breach.subject;
            let open = ring.alerts.iter_mut().rev().find(|a| {
                same(a) && (a.active || a.ended.is_some_and(|end| now - end <= REOPEN_WITHIN))
            });
            if let Some(alert) = open {
                if !alert.active {
                    alert.active = true;
                    alert.ended = None;
                    alert.ended_at = None;
                    alert.reopened += 1;
                }
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
            if ring.alerts.len() >= self.capacity {
                match ring.alerts.iter().position(|a| !a.active) {
                    Some(ended) => {
                        ring.alerts.remove(ended);
                    }
                    None => {
                        ring.dropped += 1;
                        continue;
                    }
                }
            }
            ring.next_id += 1;
            ring.alerts.push_back(Alert {
                id: ring.next_id,
                rule: breach.rule,
                subject: breach.subject.clone(),
                threshold: breach.threshold,
                peak: breach.value,
                last: breach.value,
                active: true,
                started_at: rfc3339(now),
                ended_at: None,
                detail: breach.detail.clone(),
                reopened: 0,
                ended: None,
            });
        }
    }

    /// Every alert kept, newest first.
    pub fn history(&self) -> Vec<Alert> {
        self.ring
            .lock()
            .map(|ring| ring.alerts.iter().rev().cloned().collect())
            .unwrap_or_default()
    }

    /// Breaches not recorded because every kept alert was still active.
    pub fn dropped(&self) -> u64 {
        self.ring
            .lock()
            .map(|ring| ring.dropped)
            .unwrap_or_default()
    }
}

/// Minutes the alert rules look back over (the current one and the one before).
pub const ALERT_WINDOW_MINUTES: u64 = 2;
/// Requests (or cache lookups) a window needs before a rate says anything.
const ALERT_MIN_REQUESTS: u64 = 20;
/// An operation needs this many requests in the window before its p95 counts.
const ALERT_MIN_OPERATION_REQUESTS: u64 = 5;

/// The alert rules (docs/operations.md, "The monitoring API's new endpoints"): what breaches
/// now, over the last `ALERT_WINDOW_MINUTES` of `window` (`Monitoring::window`).
pub fn breaches(
    window: &[WindowStats],
    settings: &TelemetrySettings,
    redis: Option<Result<(), String>>,
) -> Vec<Breach> {
    let mut out = Vec::new();
    for op in window
        .iter()
        .filter(|o| o.count >= ALERT_MIN_OPERATION_REQUESTS)
    {
        let limit = settings
            .slow_threshold([op.operation.as_str()])
            .as_secs_f64()
            * 1000.0;
        if op.p95_ms > limit {
            out.push(Breach {
                rule: "slow_operation",
                subject: op.operation.clone(),
                value: op.p95_ms,
                threshold: limit,
                lower_is_worse: false,
                detail: format!(
                    "p95 {:.1} ms over {} requests is above the {limit:.0} ms threshold",
                    op.p95_ms, op.count
                ),
            });
        }
    }
    let count: u64 = window.iter().map(|o| o.count).sum();
    let errors: u64 = window.iter().map(|o| o.errors).sum();
    if count >= ALERT_MIN_REQUESTS && errors as f64 / count as f64 > 0.05 {
        let rate = errors as f64 / count as f64;
        out.push(Breach {
            rule: "error_rate",
            subject: "all".into(),
            value: rate,
            threshold: 0.05,
            lower_is_worse: false,
            detail: format!(
                "{errors} of {count} requests failed ({:.1} %, above 5 %)",
                rate * 100.0
            ),
        });
    }
    let lookups: u64 = window.iter().map(|o| o.cache_lookups).sum();
    let hits: u64 = window.iter().map(|o| o.cache_hits).sum();
    if lookups >= ALERT_MIN_REQUESTS && (hits as f64 / lookups as f64) < 0.8 {
        let rate = hits as f64 / lookups as f64;
        out.push(Breach {
            rule: "cache_hit_rate",
            subject: "all".into(),
            value: rate,
            threshold: 0.8,
            lower_is_worse: true,
            detail: format!(
                "{hits} of {lookups} cache lookups hit ({:.1} %, below 80 %)",
                rate * 100.0
            ),
        });
    }
    if let Some(Err(reason)) = redis {
        out.push(Breach {
            rule: "redis_degraded",
            subject: "redis".into(),
            value: 1.0,
            threshold: 0.0,
            lower_is_worse: false,
            detail: reason,
        });
    }
    out
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

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn a_breach_starts_keeps_its_peak_ends_and_reopens_only_soon_after() {
        let alerts = Alerts::new(10);
        alerts.observe(&[breach("slow_operation", "q", 3.0)], at(0));
        alerts.observe(&[breach("slow_operation", "q", 5.0)], at(5));
        alerts.observe(&[breach("slow_operation", "q", 4.0)], at(10));
        let open = &alerts.history()[0];
        assert!(open.active && open.ended_at.is_none());
        assert_eq!((open.peak, open.last), (5.0, 4.0));
        assert_eq!(open.started_at, rfc3339(at(0)));
        alerts.observe(&[], at(15));
        let closed = &alerts.history()[0];
        assert!(!closed.active);
        assert_eq!(closed.ended_at, Some(rfc3339(at(15))));
        assert_eq!(closed.peak, 5.0);
        // Again within five minutes: the same alert, reopened.
        alerts.observe(&[breach("slow_operation", "q", 2.0)], at(60));
        let history = alerts.history();
        assert_eq!(history.len(), 1);
        assert!(history[0].active && history[0].ended_at.is_none());
        assert_eq!((history[0].reopened, history[0].peak), (1, 5.0));
        // Later than that: a new alert.
        alerts.observe(&[], at(70));
        alerts.observe(&[breach("slow_operation", "q", 2.0)], at(70 + 301));
        assert_eq!(alerts.history().len(), 2);
        // Lower is worse for hit rates.
        alerts.observe(&[breach("cache_hit_rate", "all", 0.5)], at(400));
        alerts.observe(&[breach("cache_hit_rate", "all", 0.3)], at(405));
        alerts.observe(&[breach("cache_hit_rate", "all", 0.6)], at(410));
        assert_eq!(alerts.history()[0].peak, 0.3);
    }

    #[test]
    fn the_ring_is_bounded_drops_ended_alerts_first_and_never_an_active_one() {
        let alerts = Alerts::new(3);
        alerts.observe(&[breach("redis_degraded", "redis", 1.0)], at(0));
        for i in 0..10 {
            let subject = format!("op{i}");
            alerts.observe(
                &[
                    breach("redis_degraded", "redis", 1.0),
                    breach("slow_operation", &subject, 1.0),
                ],
                at(1 + i),
            );
        }
        let history = alerts.history();
        assert_eq!(history.len(), 3);
        // The long-running Redis alert is still there, and the newest operation's.
        assert!(history
            .iter()
            .any(|a| a.rule == "redis_degraded" && a.active && a.started_at == rfc3339(at(0))));
        assert_eq!(history[0].subject, "op9");
        // More breaches at once than the ring holds: the active alerts stay as they are, the
        // rest are counted.
        let many: Vec<Breach> = (0..6)
            .map(|i| breach("slow_operation", &format!("x{i}"), 1.0))
            .collect();
        alerts.observe(&many, at(100));
        let first: Vec<u64> = alerts.history().iter().map(|a| a.id).collect();
        alerts.observe(&many, at(105));
        alerts.observe(&many, at(110));
        let later: Vec<u64> = alerts.history().iter().map(|a| a.id).collect();
        assert_eq!(first, later, "active alerts were evicted");
        assert!(alerts.history().iter().all(|a| a.active));
        assert_eq!(alerts.dropped(), 9);
    }
}
