//! The test harness, one module per thing a test runs against: the in-process gateway (`app`),
//! Postgres databases and servers (`postgres`), Redis prefixes and servers (`redis`), the real
//! binary as a process (`gateway`), an OTLP receiver (`otlp`), and the one way to wait for an
//! effect (`wait`). Area files import everything from here, never from each other.

mod app;
mod gateway;
mod otlp;
mod postgres;
mod redis;
mod wait;

pub use app::*;
pub use gateway::*;
pub use otlp::*;
pub use postgres::*;
pub use redis::*;
pub use wait::*;

use std::sync::atomic::AtomicU32;

/// Numbers database names and key prefixes apart within this process.
static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Sets names apart across processes run at the same time (with the process id).
fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// A free port for a server a test stops and starts again on the same port (private Redis or
/// Postgres). Taken below Linux's ephemeral range (32768–60999): a port from there (bind to port
/// 0) can be handed, while its server is down, to a listener another test binds on port 0 (a
/// gateway), which then answers in its place. Never the same port twice in this process, so two
/// tests starting servers at once cannot pick the same one either.
pub fn free_port() -> u16 {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut taken = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let mut candidate = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        ^ std::process::id();
    loop {
        candidate = candidate.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let port = 20_000 + (candidate >> 8) as u16 % 12_000;
        if !taken.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.push(port);
            return port;
        }
    }
}
