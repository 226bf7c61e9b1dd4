//! Which requests are traced, decided once at the root (the HTTP edge) and cheap when the answer
//! is no.
//!
//! - **The decision** follows `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` as the
//!   OpenTelemetry spec names them (`always_on`, `always_off`, `traceidratio`,
//!   `parentbased_always_on`, `parentbased_always_off`, `parentbased_traceidratio`), else
//!   `telemetry.sampler_ratio` parent-based. A caller's `traceparent` decides for it under the
//!   parent-based samplers.
//! - **Unsampled requests build no span data**: the OpenTelemetry layer's filter asks
//!   [`in_sampled_request`], so none of the request's spans reach it (the tracing spans still
//!   exist for the log lines). What they cost is this decision and a few atomics.
//! - **Errors and slow requests are always kept**: the pipeline marks them ([`keep`]), and the
//!   edge then exports one span for the request, built from what it recorded anyway (route,
//!   status, durations, operation, request id), with the request's own trace id
//!   (`telemetry::export_kept`). Its children were never recorded: that is the price of not
//!   recording them for every request that turns out fine.

use std::{
    future::Future,
    sync::atomic::{AtomicBool, Ordering},
    sync::Arc,
};

/// A root sampling policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// Every new trace.
    AlwaysOn,
    /// No new trace.
    AlwaysOff,
    /// This share of new traces.
    Ratio(f64),
}

/// The sampler: a root policy, parent-based or not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampler {
    /// What decides for a request without a caller's decision (or for every request when not
    /// parent-based).
    pub root: Policy,
    /// A caller's sampled flag in `traceparent` decides instead.
    pub parent_based: bool,
}

impl Sampler {
    /// From the standard variables, else parent-based with `ratio`. An unknown sampler name
    /// falls back to that default (with a warning on stderr: logging is not up yet).
    pub fn from_env(ratio: f64) -> Sampler {
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let default = Sampler {
            root: Policy::Ratio(ratio),
            parent_based: true,
        };
        let Some(name) = env("OTEL_TRACES_SAMPLER") else {
            return default;
        };
        let arg = env("OTEL_TRACES_SAMPLER_ARG")
            .and_then(|a| a.trim().parse::<f64>().ok())
            .unwrap_or(1.0);
        Sampler::parse(&name, arg).unwrap_or_else(|| {
            eprintln!("OTEL_TRACES_SAMPLER={name:?} is not a sampler this gateway knows; using parentbased_traceidratio with telemetry.sampler_ratio");
            default
        })
    }

    /// A sampler by its spec name, with `arg` as the ratio of the ratio samplers.
    pub fn parse(name: &str, arg: f64) -> Option<Sampler> {
        let ratio = Policy::Ratio(arg.clamp(0.0, 1.0));
        let (root, parent_based) = match name.trim() {
            "always_on" => (Policy::AlwaysOn, false),
            "always_off" => (Policy::AlwaysOff, false),
            "traceidratio" => (ratio, false),
            "parentbased_always_on" => (Policy::AlwaysOn, true),
            "parentbased_always_off" => (Policy::AlwaysOff, true),
            "parentbased_traceidratio" => (ratio, true),
            _ => return None,
        };
        Some(Sampler { root, parent_based })
    }

    /// Whether a request is traced: `parent` is the caller's sampled flag, when it sent one.
    pub fn decide(&self, parent: Option<bool>) -> bool {
        if let (true, Some(sampled)) = (self.parent_based, parent) {
            return sampled;
        }
        match self.root {
            Policy::AlwaysOn => true,
            Policy::AlwaysOff => false,
            Policy::Ratio(ratio) if ratio >= 1.0 => true,
            Policy::Ratio(ratio) if ratio <= 0.0 => false,
            Policy::Ratio(ratio) => rand::random::<f64>() < ratio,
        }
    }
}

/// The sampling state of one request.
#[derive(Debug)]
pub struct RequestTrace {
    sampled: bool,
    keep: AtomicBool,
    reason: std::sync::Mutex<Option<(String, String)>>,
    /// The request's (first) GraphQL operation key, for the slowest-requests list.
    operation: std::sync::OnceLock<String>,
}

impl RequestTrace {
    /// A request the sampler decided on.
    pub fn new(sampled: bool) -> Arc<RequestTrace> {
        Arc::new(RequestTrace {
            sampled,
            keep: AtomicBool::new(false),
            reason: std::sync::Mutex::new(None),
            operation: std::sync::OnceLock::new(),
        })
    }

    /// Whether its spans are recorded.
    pub fn sampled(&self) -> bool {
        self.sampled
    }

    /// Whether it must be exported although unsampled (an error or a slow operation).
    pub fn kept(&self) -> bool {
        self.keep.load(Ordering::Relaxed)
    }

    /// The (first) GraphQL operation the request ran, once observed.
    pub fn operation(&self) -> Option<&str> {
        self.operation.get().map(String::as_str)
    }

    /// The operation and the reason it was kept (error codes, or "slow"), once kept.
    pub fn reason(&self) -> Option<(String, String)> {
        self.reason.lock().ok()?.clone()
    }
}

tokio::task_local! {
    static TRACE: Arc<RequestTrace>;
}

/// Runs a request's work with its sampling state.
pub async fn scoped<F: Future>(trace: Arc<RequestTrace>, future: F) -> F::Output {
    TRACE.scope(trace, future).await
}

/// Runs `f` (creating the request's span) with its sampling state.
pub fn sync_scoped<R>(trace: Arc<RequestTrace>, f: impl FnOnce() -> R) -> R {
    TRACE.sync_scope(trace, f)
}

/// Whether the current task serves a sampled request; `None` outside any request.
pub fn in_sampled_request() -> Option<bool> {
    TRACE.try_with(|t| t.sampled).ok()
}

/// Notes the GraphQL operation the current request ran (its first, for a batch).
pub fn note_operation(operation: String) {
    let _ = TRACE.try_with(|t| {
        if t.operation.get().is_none() {
            let _ = t.operation.set(operation);
        }
    });
}

/// Marks the current request as one to export whatever the sampler said: its `operation`
/// failed (`reason`: the error codes) or was slow (`"slow"`). Only unsampled requests note it.
pub fn keep(operation: &str, reason: &str) {
    let _ = TRACE.try_with(|t| {
        if t.sampled || t.keep.swap(true, Ordering::Relaxed) {
            return;
        }
        if let Ok(mut slot) = t.reason.lock() {
            *slot = Some((operation.to_string(), reason.to_string()));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_names_parse_and_parents_decide_only_when_parent_based() {
        let on = Sampler::parse("always_on", 0.0).unwrap();
        assert!(on.decide(Some(false)) && on.decide(None));
        let off = Sampler::parse("parentbased_always_off", 0.0).unwrap();
        assert!(off.decide(Some(true)));
        assert!(!off.decide(Some(false)) && !off.decide(None));
        let none = Sampler::parse("parentbased_traceidratio", 0.0).unwrap();
        assert!(!none.decide(None) && none.decide(Some(true)));
        let all = Sampler::parse("traceidratio", 7.0).unwrap();
        assert_eq!(all.root, Policy::Ratio(1.0));
        assert!(all.decide(Some(false)));
        assert!(Sampler::parse("jaeger_remote", 1.0).is_none());
        // About the ratio asked, over many decisions.
        let tenth = Sampler::parse("traceidratio", 0.1).unwrap();
        let sampled = (0..20_000).filter(|_| tenth.decide(None)).count();
        assert!((1_500..2_500).contains(&sampled), "{sampled} of 20 000");
    }
}
