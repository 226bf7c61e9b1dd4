//! schemathesis (PyPI) in GraphQL mode against the real binary: fed `schema.graphql`, with a valid
//! token, `--checks all`, a fixed seed and a fixed example budget. It must exit 0: no 5xx, no
//! server-error GraphQL response, nothing that breaks the schema.
//!
//! schemathesis is installed (pinned) into a virtualenv under the test's target folder on first
//! use; `scripts/test.sh` makes sure python3 with venv support exists. `tests/fuzz/` holds its
//! configuration (demo ids to draw from, no state kept between runs) and hooks (a strategy for the
//! `LocalTime` input scalar, and the documented domain codes that are answers, not defects: see
//! the hooks file).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::helpers::Gateway;

const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// Examples per operation (split between valid and invalid inputs): ≈ 1 000 requests, ≈ 20 s.
const EXAMPLES: &str = "100";

/// The schemathesis executable, installing it into a virtualenv on first use.
fn schemathesis() -> PathBuf {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("schemathesis-4.32.5");
    let binary = venv.join("bin/schemathesis");
    if binary.exists() {
        return binary;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let created = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("python3 (scripts/test.sh installs it)");
    assert!(
        created.success(),
        "python3 -m venv failed (python3-venv missing?)"
    );
    let installed = Command::new(venv.join("bin/pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            SCHEMATHESIS,
        ])
        .status()
        .expect("pip runs");
    assert!(installed.success(), "pip install {SCHEMATHESIS} failed");
    binary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_error_and_no_schema_violation() {
    let binary = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    // A fresh demo database; rate limiting off, since thousands of requests from one user would
    // otherwise be answered 429 and the result would depend on timing.
    let mut gateway = Gateway::start(&[("BFF__RATE_LIMIT__ENABLED", "false")]).await;
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let work = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("schemathesis-run-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let mut command = Command::new(&binary);
    command
        .arg("--config-file")
        .arg(fuzz.join("schemathesis.toml"))
        .arg("run")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql"))
        .args(["--url", &format!("{}/graphql", gateway.address)])
        .args([
            "-H",
            &format!("Authorization: Bearer {}", gateway.owner_token()),
        ])
        .args(["--checks", "all"])
        // The stateful phase ignores the seed (true randomness): fuzzing only keeps runs repeatable.
        .args(["--phases", "fuzzing"])
        .args(["--seed", "1", "--max-examples", EXAMPLES, "--workers", "1"])
        .args(["--request-timeout", "15", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PYTHONPATH", &fuzz)
        .env("HYPOTHESIS_STORAGE_DIRECTORY", work.join("hypothesis"))
        .current_dir(&work)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let child = command.spawn().expect("schemathesis runs");
    let pid = child.id();
    let waiting = tokio::task::spawn_blocking(move || child.wait_with_output());
    let output = match tokio::time::timeout(Duration::from_secs(600), waiting).await {
        Ok(output) => output.unwrap().expect("schemathesis output"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("schemathesis did not finish within 10 minutes");
        }
    };
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "schemathesis failed:\n{report}");
    assert!(
        report.contains("passed"),
        "schemathesis ran nothing:\n{report}"
    );
    // The gateway is still healthy, and nothing panicked along the way.
    assert!(gateway.is_running());
    let health = reqwest::get(format!("{}/readyz", gateway.address))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(!gateway.stderr().contains("panicked"));
    let _ = std::fs::remove_dir_all(&work);
    println!("{report}");
}
