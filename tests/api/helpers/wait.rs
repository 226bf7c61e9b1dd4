//! The one way a test waits for something to happen: poll the observable effect until it holds
//! or a deadline passes. No test sleeps to let the gateway "get there".

use std::{fmt::Display, future::Future, time::Duration};

/// How often a condition is polled: often enough to see changes within a few tens of
/// milliseconds, rarely enough not to load a 2-core CI machine.
const INTERVAL: Duration = Duration::from_millis(25);

/// What one poll returned: the value once the condition holds, or what was seen instead (shown
/// when the deadline passes).
pub trait Check {
    /// What [`eventually`] returns once the condition holds.
    type Value;
    /// `Ok` when done; `Err` with the state seen otherwise (if there is one worth printing).
    fn settle(self) -> Result<Self::Value, Option<String>>;
}

impl Check for bool {
    type Value = ();
    fn settle(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

impl<T> Check for Option<T> {
    type Value = T;
    fn settle(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Check for Result<T, E> {
    type Value = T;
    fn settle(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(seen.to_string()))
    }
}

fn give_up(what: &str, deadline: Duration, seen: Option<String>) -> ! {
    match seen {
        Some(seen) => panic!("{what} (not within {deadline:?}; last seen: {seen})"),
        None => panic!("{what} (not within {deadline:?})"),
    }
}

/// Polls `check` until it holds (`true`, `Some`, `Ok`) and returns its value; panics with `what`
/// and the last state seen once `deadline` has passed, also when one poll itself has not
/// finished by then (a server that accepts and never answers). Tokio's clock, so a paused test
/// clock moves the deadline with it.
pub async fn eventually<C, Fut>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> Fut,
) -> C::Value
where
    C: Check,
    Fut: Future<Output = C>,
{
    let until = tokio::time::Instant::now() + deadline;
    let mut last = None;
    loop {
        let Ok(polled) = tokio::time::timeout_at(until, check()).await else {
            give_up(what, deadline, last.or(Some("a poll still running".into())))
        };
        match polled.settle() {
            Ok(value) => return value,
            Err(seen) if tokio::time::Instant::now() >= until => give_up(what, deadline, seen),
            Err(seen) => {
                last = seen;
                tokio::time::sleep(INTERVAL).await
            }
        }
    }
}

/// [`eventually`] for synchronous code (process harnesses that block: starting and stopping
/// servers).
pub fn eventually_blocking<C: Check>(
    deadline: Duration,
    what: &str,
    mut check: impl FnMut() -> C,
) -> C::Value {
    let until = std::time::Instant::now() + deadline;
    loop {
        match check().settle() {
            Ok(value) => return value,
            Err(seen) if std::time::Instant::now() >= until => give_up(what, deadline, seen),
            Err(_) => std::thread::sleep(INTERVAL),
        }
    }
}
