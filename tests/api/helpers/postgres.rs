//! Postgres for the tests: a database of each test's own on the shared server (created, then
//! dropped), and a private server a test may stop and restart (`PrivatePostgres`).

use std::{sync::atomic::Ordering, time::Duration};

use sqlx::PgPool;

use super::{eventually_blocking, free_port, rand_suffix, COUNTER};

/// The shared server's URL (`TEST_DATABASE_URL`), with its administration database.
pub(super) fn base_postgres_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database name no other test uses.
pub fn unique_database_name() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("bff_test_{}_{}_{}", std::process::id(), n, rand_suffix())
}

/// A fresh, empty database of the test's own on the shared Postgres; its URL.
pub async fn create_postgres_database(name: &str) -> String {
    let admin = PgPool::connect(&base_postgres_url())
        .await
        .expect("Postgres reachable (TEST_DATABASE_URL)");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create test database");
    admin.close().await;
    let base = base_postgres_url();
    format!(
        "{}/{name}",
        &base[..base.rfind('/').expect("url has a database")]
    )
}

/// Fills the database at `url` with the demo data, as the real binary's `seed` command does.
pub fn seed_demo(url: &str) {
    let seeded = std::process::Command::new(env!("CARGO_BIN_EXE_padel-bff"))
        .args(["seed", "--scale", "demo"])
        .env("DATABASE_URL", url)
        .env(
            "BFF_CONFIG_DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config"),
        )
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("the padel-bff binary runs");
    assert!(seeded.success(), "seeding {url} failed");
}

/// Drops a test database, on a thread of its own: callers include `Drop`, which cannot await,
/// while the test's runtime may be shutting down.
pub fn drop_postgres_database(name: String) {
    let base = base_postgres_url();
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            if let Ok(admin) = PgPool::connect(&base).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&admin)
                    .await;
            }
        });
    })
    .join();
}

/// A PostgreSQL server of the test's own (initdb in a temporary folder, a free port), so a test
/// can stop and restart it without touching the shared one. Uses the binaries of the installed
/// server (`/usr/lib/postgresql/<version>/bin`, or `pg_config --bindir`); as root, it runs them
/// as the `postgres` user, since PostgreSQL refuses to run as root.
pub struct PrivatePostgres {
    pub port: u16,
    bin: std::path::PathBuf,
    dir: std::path::PathBuf,
    user: Option<(u32, u32)>,
    child: Option<std::process::Child>,
}

impl PrivatePostgres {
    pub fn start() -> PrivatePostgres {
        use std::os::unix::process::CommandExt;
        let bin = postgres_bindir();
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("padel-bff-pg-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let user = if is_root() {
            let id = |flag: &str| -> u32 {
                let out = std::process::Command::new("id")
                    .args([flag, "postgres"])
                    .output()
                    .expect("id postgres");
                String::from_utf8_lossy(&out.stdout)
                    .trim()
                    .parse()
                    .expect("postgres user exists")
            };
            let (uid, gid) = (id("-u"), id("-g"));
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).unwrap();
            Some((uid, gid))
        } else {
            None
        };
        let mut initdb = std::process::Command::new(bin.join("initdb"));
        initdb
            .args([
                "-D",
                "data",
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if let Some((uid, gid)) = user {
            initdb.uid(uid).gid(gid);
        }
        assert!(
            initdb.status().expect("initdb runs").success(),
            "initdb failed"
        );
        let mut server = PrivatePostgres {
            port,
            bin,
            dir,
            user,
            child: None,
        };
        server.spawn();
        server
    }

    /// Starts (or restarts) the server and waits until it accepts connections.
    pub fn spawn(&mut self) {
        use std::os::unix::process::CommandExt;
        let log = std::fs::File::create(self.dir.join(format!("log-{}", self.port))).ok();
        let mut command = std::process::Command::new(self.bin.join("postgres"));
        command
            .args(["-D", "data", "-p", &self.port.to_string(), "-k"])
            .arg(&self.dir)
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=50",
            ])
            .current_dir(&self.dir)
            .stdout(std::process::Stdio::null());
        if let Some(log) = log {
            command.stderr(log);
        }
        if let Some((uid, gid)) = self.user {
            command.uid(uid).gid(gid);
        }
        self.child = Some(command.spawn().expect("postgres starts"));
        eventually_blocking(
            Duration::from_secs(30),
            "private postgres did not start",
            || {
                std::process::Command::new(self.bin.join("pg_isready"))
                    .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                    .status()
                    .is_ok_and(|s| s.success())
            },
        );
    }

    /// Fast shutdown (SIGINT): sessions are cut, as when a managed database fails over.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::process::Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// A URL for `database` on this server.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// The directory of the installed PostgreSQL server binaries (the newest version).
fn postgres_bindir() -> std::path::PathBuf {
    let mut versions: Vec<(u32, std::path::PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let out = std::process::Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("PostgreSQL server binaries (scripts/test.sh installs them)");
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
