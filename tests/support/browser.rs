//! A real headless Chromium, driven over WebDriver (`chromedriver` on a free port, fantoccini
//! with rustls). Debian's `chromium` and `chromium-driver` are installed by
//! scripts/fetch-test-tools. Screenshots go to `target/screenshots/`, or to the directory in
//! `HITL_GATE_SCREENSHOT_DIR` (`docs/images` to refresh the README's pictures).
//!
//! chromedriver starts Chromium (and Chromium its renderers and helpers) as its children; a
//! test that panicked before it quit the session used to leave them all running, since killing
//! chromedriver alone orphans its browser. So chromedriver leads a process group of its own,
//! and dropping the [`Browser`] (also while a test panics) kills the whole group, then every
//! process still marked as the browser's (`procs.rs`).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};

use super::procs::Group;

/// A browser session, and the chromedriver behind it (stopped with its browser on drop).
pub struct Browser {
    pub c: Client,
    driver: Group,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        Self::start_with(width, height, false).await
    }

    /// A phone: Chromium's mobile emulation at `width`×`height` CSS pixels, twice as dense.
    pub async fn phone(width: u32, height: u32) -> Browser {
        Self::start_with(width, height, true).await
    }

    async fn start_with(width: u32, height: u32, mobile: bool) -> Browser {
        for tool in ["chromium", "chromedriver"] {
            assert!(
                Command::new(tool)
                    .arg("--version")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success()),
                "{tool} is missing: run scripts/fetch-test-tools (apt-get install chromium \
                 chromium-driver)"
            );
        }
        // fantoccini's TLS stack brings a second rustls crypto provider into the test build;
        // name the one to use (the WebDriver connection is plain HTTP on loopback anyway).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = super::server::free_port();
        let driver = Group::spawn(
            Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("chromedriver starts");
        let caps = serde_json::json!({
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic",
                    format!("--window-size={width},{height}"),
                ],
            }
        });
        let mut caps = caps;
        if mobile {
            caps["goog:chromeOptions"]["mobileEmulation"] = serde_json::json!({
                "deviceMetrics": {"width": width, "height": height, "pixelRatio": 2.0, "touch": true},
                "userAgent": "Mozilla/5.0 (Linux; Android 14) Mobile hitl-gate-test",
            });
        }
        let caps = match caps {
            serde_json::Value::Object(m) => m,
            _ => unreachable!(),
        };
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        let c = loop {
            match ClientBuilder::rustls()
                .expect("rustls")
                .capabilities(caps.clone())
                .connect(&url)
                .await
            {
                Ok(c) => break c,
                Err(e) if start.elapsed() < Duration::from_secs(60) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("chromedriver did not start a session: {e}"),
            }
        };
        Browser { c, driver }
    }

    /// Waits up to `secs` for `css` to match an element.
    pub async fn wait_for(&self, css: &str, secs: u64) -> fantoccini::elements::Element {
        let start = Instant::now();
        loop {
            if let Ok(e) = self.c.find(Locator::Css(css)).await {
                return e;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "{css} did not appear within {secs} s; page: {}",
                self.c.source().await.unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to `secs` until `css` matches nothing.
    pub async fn wait_gone(&self, css: &str, secs: u64) {
        let start = Instant::now();
        while self.c.find(Locator::Css(css)).await.is_ok() {
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "{css} was still there after {secs} s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.c
            .find(Locator::Css("body"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Runs `script` in the page and returns its value.
    pub async fn js(&self, script: &str) -> serde_json::Value {
        self.c.execute(script, vec![]).await.expect("script runs")
    }

    /// Signs in at the provider's login form the browser was sent to.
    pub async fn provider_login(&self, user: &str) {
        self.wait_for("input[name=login]", 15)
            .await
            .send_keys(user)
            .await
            .unwrap();
        self.c
            .find(Locator::Css("input[name=password]"))
            .await
            .unwrap()
            .send_keys("any password")
            .await
            .unwrap();
        self.c
            .find(Locator::Css("button[type=submit]"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Saves a screenshot of the top of the page as `name.png` and returns where.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        self.js("window.scrollTo(0, 0); return true").await;
        let dir = std::env::var_os("HITL_GATE_SCREENSHOT_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots")
            });
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.c.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}
