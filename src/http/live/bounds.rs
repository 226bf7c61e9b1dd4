//! The socket's own bounds: messages per second, and telling a message over the size limit from
//! other read errors.

use std::time::Duration;

/// Messages counted per second.
pub(super) struct Window {
    since: std::time::Instant,
    count: u32,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            since: std::time::Instant::now(),
            count: 0,
        }
    }
}

impl Window {
    /// Counts one message; whether this second's count is now over `most`.
    pub(super) fn over(&mut self, most: u32) -> bool {
        if self.since.elapsed() >= Duration::from_secs(1) {
            *self = Window::default();
        }
        self.count += 1;
        self.count > most
    }
}

/// Whether a read failed on a message or frame over the size limit.
pub(super) fn too_big(error: &axum::Error) -> bool {
    use tungstenite::Error;
    let source = std::error::Error::source(error);
    source
        .and_then(|e| e.downcast_ref::<Error>())
        .is_some_and(|e| matches!(e, Error::Capacity(_)))
}
