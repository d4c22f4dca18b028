//! A real headless Chromium, driven over WebDriver (`chromedriver` on a free port, fantoccini
//! with rustls). Debian's `chromium` and `chromium-driver` are installed by
//! scripts/fetch-test-tools. Screenshots go to `target/screenshots/`, or to the directory in
//! `HITL_GATE_SCREENSHOT_DIR` (`docs/images` to refresh the README's pictures).
//!
//! The browser runs in the time zone [`ZONE`] (not UTC), so the pages' local times differ from
//! the UTC the server writes. [`Browser::axe`] runs axe-core (pinned in tests/axe/, installed
//! by scripts/fetch-test-tools) on the page and fails on serious or critical violations.
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

/// The browser's time zone.
pub const ZONE: &str = "Europe/Berlin";

/// axe-core's source, read once.
fn axe_source() -> &'static str {
    static SRC: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SRC.get_or_init(|| {
        let path = super::tools::dir().join("axe/node_modules/axe-core/axe.min.js");
        std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{} is missing ({e}): run scripts/fetch-test-tools (it installs axe-core with npm ci)",
                path.display()
            )
        })
    })
}

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
                .env("TZ", ZONE)
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

    /// Waits up to `secs` until the text of `css` contains `needle`; returns that text.
    pub async fn wait_text(&self, css: &str, needle: &str, secs: u64) -> String {
        let start = Instant::now();
        loop {
            let text = match self.c.find(Locator::Css(css)).await {
                Ok(e) => e.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(needle) {
                return text;
            }
            assert!(
                start.elapsed() < Duration::from_secs(secs),
                "{css} did not say {needle:?} within {secs} s: {text:?}"
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

    /// Runs axe-core on the page (`what` names it in the failure) and fails on any serious or
    /// critical violation, listing each with the elements it found.
    pub async fn axe(&self, what: &str) {
        let r = self.axe_findings().await;
        let serious: Vec<String> = serde_json::from_value(r["serious"].clone()).unwrap_or_default();
        assert!(
            serious.is_empty(),
            "accessibility ({what}), serious or critical:\n{}",
            serious.join("\n")
        );
        assert!(
            r["passes"].as_u64().unwrap_or(0) > 10,
            "axe checked next to nothing on {what}: {r}"
        );
        // The lesser findings are printed (shown with --nocapture), not failed on.
        for v in r["other"].as_array().into_iter().flatten() {
            eprintln!("axe ({what}): {}", v.as_str().unwrap_or_default());
        }
    }

    /// What axe-core finds on the page: `serious` (serious and critical violations), `other`
    /// (the lesser ones), each a line, and how many rules `passes`.
    pub async fn axe_findings(&self) -> serde_json::Value {
        if self.js("return typeof window.axe").await != serde_json::json!("object") {
            self.c
                .execute(&format!("{}\n;return true", axe_source()), vec![])
                .await
                .expect("axe-core loads");
        }
        self.c
            .execute_async(
                "var done = arguments[arguments.length - 1];
                 var line = function (v) {
                   return v.impact + ' ' + v.id + ': ' + v.help + ' at ' +
                     v.nodes.map(function (n) { return n.target.join(' '); }).join(', ');
                 };
                 axe.run(document, {resultTypes: ['violations']}).then(function (r) {
                   done({
                     serious: r.violations.filter(function (v) {
                       return v.impact === 'serious' || v.impact === 'critical';
                     }).map(line),
                     other: r.violations.filter(function (v) {
                       return v.impact !== 'serious' && v.impact !== 'critical';
                     }).map(line),
                     passes: r.passes.length
                   });
                 }).catch(function (e) { done({serious: ['axe failed: ' + e], other: [], passes: 0}); });",
                vec![],
            )
            .await
            .expect("axe runs")
    }

    /// Checks that `css` is drawn entirely within the first `px` pixels of the window (and the
    /// window's height), where it is now.
    pub async fn in_first(&self, css: &str, px: u32) {
        let r = self
            .js(&format!(
                "var e = document.querySelector({css:?}); if (!e) {{ return null; }}
                 var r = e.getBoundingClientRect();
                 return [r.top, r.bottom, r.height, window.innerHeight];"
            ))
            .await;
        let v: Vec<f64> = serde_json::from_value(r.clone())
            .unwrap_or_else(|_| panic!("{css} is not on the page: {r}"));
        let limit = f64::from(px).min(v[3]);
        assert!(
            v[2] > 0.0 && v[0] >= 0.0 && v[1] <= limit,
            "{css} is drawn from {} to {} px, not within the first {limit} px",
            v[0],
            v[1]
        );
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
