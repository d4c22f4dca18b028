//! The server's clock. Every decision the server makes by time reads [`Clock::now_ms`]: request
//! deadlines and the reaper, change freezes, escalation (`[serve] escalate_after`), the
//! notification backoff, web sessions, re-authentication and the ID token's times. Whatever
//! waits for such a time waits with [`Clock::sleep_until`].
//!
//! A release build has only the system clock ([`Clock::system`], a zero-sized value): nothing
//! here reads a file or the environment. Builds with the `test-hooks` feature can instead follow
//! a file that holds an offset in milliseconds (decimal, may be negative) added to the system
//! time: the test harness gives an in-process server one ([`Clock::following`]), and
//! `hitl-gate serve` follows the file named by `HITL_GATE_TEST_CLOCK` ([`Clock::from_env`]).
//! The test OIDC provider reads the same file, so sign-ins agree with the server. The file is
//! read on every [`Clock::now_ms`], so a request sent after the test wrote it is handled at the
//! new time; and [`Clock::watch`] looks at it every few milliseconds and wakes every
//! [`Clock::sleep_until`], so the reaper does not sleep through a deadline the test moved past.
//! One file per server, not one offset per process: the tests of one binary run in parallel,
//! and a process-wide offset would move all their servers at once.

use std::time::Duration;

/// The time source of one server (cheap to clone; clones share the source).
#[derive(Clone, Default)]
pub struct Clock {
    #[cfg(feature = "test-hooks")]
    file: Option<std::sync::Arc<FileClock>>,
}

impl Clock {
    /// The system clock.
    pub fn system() -> Clock {
        Clock::default()
    }

    /// Unix milliseconds now, as this server sees it.
    pub fn now_ms(&self) -> i64 {
        #[cfg(feature = "test-hooks")]
        if let Some(f) = &self.file {
            return crate::api::now_ms().saturating_add(f.offset());
        }
        crate::api::now_ms()
    }

    /// Completes once [`Clock::now_ms`] has reached `deadline_ms`: at once when it has, and
    /// early when a test moves the clock past it.
    pub async fn sleep_until(&self, deadline_ms: i64) {
        #[cfg(feature = "test-hooks")]
        let mut moved = self.file.as_ref().map(|f| f.subscribe());
        loop {
            let left = deadline_ms.saturating_sub(self.now_ms());
            if left <= 0 {
                return;
            }
            let sleep = tokio::time::sleep(Duration::from_millis(left.unsigned_abs()));
            #[cfg(feature = "test-hooks")]
            if let Some(rx) = moved.as_mut() {
                tokio::select! {
                    () = sleep => {}
                    _ = rx.changed() => {}
                }
                continue;
            }
            sleep.await;
        }
    }

    /// Runs for as long as the server does, waking the sleepers when a test moves the clock
    /// (completes at once on the system clock).
    pub async fn watch(self) {
        #[cfg(feature = "test-hooks")]
        if let Some(f) = &self.file {
            loop {
                let _ = f.offset();
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// The environment variable naming the clock file of `hitl-gate serve` (test builds).
#[cfg(feature = "test-hooks")]
pub const CLOCK_ENV: &str = "HITL_GATE_TEST_CLOCK";

/// A clock file and the offset last read from it.
#[cfg(feature = "test-hooks")]
struct FileClock {
    path: std::path::PathBuf,
    last: std::sync::atomic::AtomicI64,
    moved: tokio::sync::watch::Sender<i64>,
}

#[cfg(feature = "test-hooks")]
impl FileClock {
    /// The offset in the file now (the last one read when it is missing or half written),
    /// telling the sleepers when it changed.
    fn offset(&self) -> i64 {
        use std::sync::atomic::Ordering;
        let read = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|s| s.trim().parse::<i64>().ok());
        match read {
            Some(o) => {
                if self.last.swap(o, Ordering::SeqCst) != o {
                    self.moved.send_replace(o);
                }
                o
            }
            None => self.last.load(Ordering::SeqCst),
        }
    }

    fn subscribe(&self) -> tokio::sync::watch::Receiver<i64> {
        self.moved.subscribe()
    }
}

#[cfg(feature = "test-hooks")]
impl Clock {
    /// A clock at the system time plus the offset in `path` (none while it is missing).
    pub fn following(path: impl Into<std::path::PathBuf>) -> Clock {
        Clock {
            file: Some(std::sync::Arc::new(FileClock {
                path: path.into(),
                last: std::sync::atomic::AtomicI64::new(0),
                moved: tokio::sync::watch::channel(0).0,
            })),
        }
    }

    /// [`Clock::following`] the file named by `HITL_GATE_TEST_CLOCK`, or the system clock.
    pub fn from_env() -> Clock {
        match std::env::var_os(CLOCK_ENV) {
            Some(p) if !p.is_empty() => Clock::following(p),
            _ => Clock::system(),
        }
    }
}

#[cfg(not(feature = "test-hooks"))]
impl Clock {
    /// The system clock: without the `test-hooks` feature nothing else exists.
    pub fn from_env() -> Clock {
        Clock::system()
    }
}

#[cfg(all(test, feature = "test-hooks"))]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_moved_clock_wakes_a_sleeper_and_is_seen_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("clock");
        let clock = Clock::following(&file);
        let before = clock.now_ms();
        assert!((before - crate::api::now_ms()).abs() < 1000);
        let watcher = tokio::spawn(clock.clone().watch());
        let sleeper = tokio::spawn({
            let c = clock.clone();
            async move { c.sleep_until(before + 3_600_000).await }
        });
        std::fs::write(&file, "3700000\n").unwrap();
        assert!(clock.now_ms() >= before + 3_700_000);
        tokio::time::timeout(Duration::from_secs(30), sleeper)
            .await
            .expect("the sleeper woke")
            .unwrap();
        watcher.abort();
        // Half written or gone: the last offset stays.
        std::fs::write(&file, "").unwrap();
        assert!(clock.now_ms() >= before + 3_700_000);
    }
}
