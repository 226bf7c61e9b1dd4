//! The real `padel-bff` binary as a child process (`Gateway`): its own config directory and
//! environment, a demo database of its own unless told otherwise, and tokens signed by a
//! `TokenAuthority` built from the very settings the process loads.

use std::time::Duration;

use padel_bff::{auth::TokenAuthority, config::Settings};

use super::{eventually, eventually_blocking};

/// The real `padel-bff` binary, started with its own config and environment; its stderr goes to
/// a file (printed when the test fails) so tests can search it.
pub struct Gateway {
    child: std::process::Child,
    pub address: String,
    /// The environment it runs with (other commands of the binary get the same).
    env: Vec<(String, String)>,
    /// Signs tokens as the process verifies them: built from the settings the process loads.
    tokens: TokenAuthority,
    _dir: TempDir,
    log: std::path::PathBuf,
}

struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Gateway {
    /// Starts the binary with `env` on top of the defaults above and waits until it answers.
    pub async fn start(env: &[(&str, &str)]) -> Gateway {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("padel-bff-otel-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut vars: Vec<(String, String)> = vec![
            ("PATH".into(), std::env::var("PATH").unwrap_or_default()),
            (
                "BFF_CONFIG_DIR".into(),
                concat!(env!("CARGO_MANIFEST_DIR"), "/config").into(),
            ),
            ("BFF_LISTEN".into(), format!("127.0.0.1:{port}")),
            (
                "BFF__DATABASE__SQLITE_PATH".into(),
                dir.join("bff.db").display().to_string(),
            ),
            // Tests read dates years ahead, clear of the seeded reservations.
            ("BFF__LIMITS__DATE_DAYS_AHEAD".into(), "3650".into()),
            ("RUST_LOG".into(), "warn".into()),
        ];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_padel-bff"));
        command
            .arg("serve")
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(dir.join("stderr.log")).unwrap());
        let log = dir.join("stderr.log");
        let child = command.spawn().expect("start padel-bff");
        let address = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        eventually(Duration::from_secs(60), "gateway did not start", || async {
            client
                .get(format!("{address}/healthz"))
                .send()
                .await
                .is_ok()
        })
        .await;
        // The process loads its settings from this directory and exactly `vars` (env_clear).
        let settings = Settings::load_from(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/config")),
            &vars,
        )
        .expect("the gateway's settings load");
        Gateway {
            child,
            address,
            env: vars,
            tokens: TokenAuthority::new(&settings.auth),
            _dir: TempDir(dir),
            log,
        }
    }

    /// A development token for a seeded user, from the binary's own `token` command run with
    /// the gateway's configuration.
    pub fn token(&self, email: &str) -> String {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_padel-bff"))
            .args(["token", "--user", email])
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("padel-bff token");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_string()
    }

    /// A token for any user id, signed with the process's own key.
    pub fn token_for_id(&self, user_id: i64) -> String {
        self.tokens
            .sign(user_id, Duration::from_secs(600))
            .expect("the gateway runs with an HS256 secret")
    }

    /// A token for the demo owner (user 2 in the seeded data).
    pub fn owner_token(&self) -> String {
        self.token_for_id(2)
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the process is still running (it never restarted itself).
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGTERM, then wait for the process to exit (it flushes queued spans first).
    pub fn terminate(&mut self) {
        let pid = self.child.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        eventually_blocking(
            Duration::from_secs(30),
            "gateway did not stop on SIGTERM",
            || self.child.try_wait().unwrap().is_some(),
        );
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- gateway stderr ---\n{}", self.stderr());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
