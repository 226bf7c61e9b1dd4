//! schemathesis (PyPI) against the real binary, twice: in GraphQL mode fed `schema.graphql`, and
//! in OpenAPI mode fed `openapi.json` (the BFF URLs). Each with a valid token, `--checks all`, a
//! fixed seed and a fixed example budget, and each must exit 0: no 5xx, no server-error GraphQL
//! response, nothing that breaks the schema, no schema-valid input refused and no invalid one
//! accepted.
//!
//! schemathesis is installed (pinned) into a virtualenv under the test's target folder on first
//! use; `scripts/test.sh` makes sure python3 with venv support exists. `tests/fuzz/` holds the
//! configurations (demo ids to draw from, no state kept between runs) and hooks (strategies for
//! `LocalTime` and dates, and the documented domain answers that are not defects: see each hooks
//! file).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::helpers::Gateway;

const SCHEMATHESIS: &str = "schemathesis==4.32.5";
/// Examples per operation (split between valid and invalid inputs): ≈ 1 000 requests, ≈ 20 s.
const EXAMPLES: &str = "100";

/// The schemathesis executable, installing it into a virtualenv on first use (once: the two
/// runs may start together).
fn schemathesis() -> PathBuf {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
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
    let schema = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    run_against_gateway(
        "schemathesis.toml",
        "hooks",
        &schema,
        "/graphql",
        &["--phases", "fuzzing"],
    )
    .await;
}

/// The BFF URLs of `openapi.json` (what `/api/openapi.json` serves, a test checks): every check,
/// the examples, coverage and fuzzing phases. `tests/fuzz/openapi_hooks.py` says which refusals
/// of valid-looking input are documented domain rules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_against_the_openapi_document() {
    let document = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi.json");
    let phases = ["--phases", "examples,coverage,fuzzing"];
    let report = run_against_gateway("openapi.toml", "openapi_hooks", &document, "", &phases).await;
    // The three URLs, each exercised.
    assert!(
        report.contains("Tested: 3"),
        "not every URL was tested:\n{report}"
    );
}

/// Runs schemathesis with `config` and `hooks` (under `tests/fuzz/`) on `schema` against a fresh
/// demo gateway at `path`, with a valid token and `--checks all`; it must exit 0. Returns its
/// report.
async fn run_against_gateway(
    config: &str,
    hooks: &str,
    schema: &Path,
    path: &str,
    phases: &[&str],
) -> String {
    let binary = tokio::task::spawn_blocking(schemathesis).await.unwrap();
    // A fresh demo database; rate limiting off, since thousands of requests from one user would
    // otherwise be answered 429 and the result would depend on timing.
    let mut gateway = Gateway::start(&[("BFF__RATE_LIMIT__ENABLED", "false")]).await;
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let work = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("schemathesis-run-{}-{hooks}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let mut command = Command::new(&binary);
    command
        .arg("--config-file")
        .arg(fuzz.join(config))
        .arg("run")
        .arg(schema)
        .args(["--url", &format!("{}{path}", gateway.address)])
        .args([
            "-H",
            &format!("Authorization: Bearer {}", gateway.owner_token()),
        ])
        .args(["--checks", "all"])
        // The stateful phase ignores the seed (true randomness): the others keep runs repeatable.
        .args(phases)
        .args(["--seed", "1", "--max-examples", EXAMPLES, "--workers", "1"])
        .args(["--request-timeout", "15", "--no-color"])
        .env("SCHEMATHESIS_HOOKS", hooks)
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
    report
}
