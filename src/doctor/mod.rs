//! `padel-bff doctor`: the platform's deployment checklist, run by the program itself with the
//! configuration the gateway would start with. Each check is `ok`, `warn` (works, but not as a
//! production deployment should), `fail` (the gateway would not work as configured) or `skip`
//! (not configured). Exit code: 0 without failures, 1 with any (`--strict`: warnings too).
//!
//! It only reads: it runs no migration, writes no key and publishes nothing.

mod probes;
mod settings;

pub use probes::http_get_status;

use serde::Serialize;

use crate::config::Settings;

/// A check's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// As it should be.
    Ok,
    /// Works, but not as a production deployment should.
    Warn,
    /// Broken.
    Fail,
    /// Not configured, nothing to check.
    Skip,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Skip => "skip",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: &'static str,
    /// The verdict.
    pub status: Status,
    /// What was found.
    pub detail: String,
}

fn check(name: &'static str, status: Status, detail: impl Into<String>) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
    }
}

/// Runs every check.
pub async fn run(settings: &Settings) -> Vec<Check> {
    let mut checks = Vec::new();
    probes::database(settings, &mut checks).await;
    probes::redis(settings, &mut checks).await;
    checks.push(probes::otlp(settings).await);
    checks.push(settings::jwt(settings));
    checks.push(settings::rate_limit(settings));
    checks.push(settings::cors(settings));
    checks
}

/// The exit code of a report.
pub fn exit_code(checks: &[Check], strict: bool) -> i32 {
    let failed = checks
        .iter()
        .any(|c| c.status == Status::Fail || (strict && c.status == Status::Warn));
    i32::from(failed)
}

/// The report as a table.
pub fn table(checks: &[Check]) -> String {
    let width = checks
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = format!("{:width$}  {:6}  DETAIL\n", "CHECK", "STATUS");
    for c in checks {
        out.push_str(&format!(
            "{:width$}  {:6}  {}\n",
            c.name,
            c.status.as_str(),
            c.detail
        ));
    }
    let count = |s: Status| checks.iter().filter(|c| c.status == s).count();
    out.push_str(&format!(
        "\n{} ok, {} warn, {} fail, {} skip\n",
        count(Status::Ok),
        count(Status::Warn),
        count(Status::Fail),
        count(Status::Skip)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_decide_the_exit_code_and_warnings_only_when_strict() {
        let warn = [check("a", Status::Ok, ""), check("b", Status::Warn, "")];
        assert_eq!(exit_code(&warn, false), 0);
        assert_eq!(exit_code(&warn, true), 1);
        let fail = [check("a", Status::Fail, ""), check("b", Status::Skip, "")];
        assert_eq!(exit_code(&fail, false), 1);
        let text = table(&fail);
        assert!(text.starts_with("CHECK"));
        assert!(text.contains("a      fail  "), "{text}");
    }
}
