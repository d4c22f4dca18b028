//! The test clock: instead of sleeping until a deadline, a freeze or a session's end, a test
//! moves the clock of the server under test past it.
//!
//! A server built with the `test-hooks` feature follows a clock file: an offset in milliseconds
//! added to the system time (`src/server/clock.rs`). Every [`super::server::TestServer`] has one
//! in its temp dir, `hitl-gate serve` started by [`super::server::ServeProcess`] follows the one
//! beside its data dir (`HITL_GATE_TEST_CLOCK`), and the test OIDC provider started for a
//! server reads the server's (so the ID tokens it signs agree with the server's time).

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file name of the clock file in a test's temp dir.
pub const FILE: &str = "test-clock";

/// A clock file.
#[derive(Clone, Debug)]
pub struct TestClock {
    path: PathBuf,
}

impl TestClock {
    /// The clock file in `dir` (at offset 0 until it is written).
    pub fn in_dir(dir: &Path) -> TestClock {
        TestClock {
            path: dir.join(FILE),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The clock a server in this process follows (the system clock in a build without the
    /// `test-hooks` feature, where the tests that move the clock fail).
    pub fn server_clock(&self) -> hitl_gate::server::Clock {
        #[cfg(feature = "test-hooks")]
        return hitl_gate::server::Clock::following(&self.path);
        #[cfg(not(feature = "test-hooks"))]
        hitl_gate::server::Clock::system()
    }

    /// The offset now, in milliseconds.
    pub fn offset_ms(&self) -> i64 {
        std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Sets the offset (written whole, then renamed into place: a reader never sees half).
    pub fn set_offset_ms(&self, offset: i64) {
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset}\n")).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.set_offset_ms(self.offset_ms() + i64::try_from(by.as_millis()).unwrap());
    }

    /// Unix milliseconds now, as the server sees it.
    pub fn now_ms(&self) -> i64 {
        hitl_gate::api::now_ms() + self.offset_ms()
    }
}
