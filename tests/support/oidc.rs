//! The web UI's test world: a real OpenID Connect provider (panva's oidc-provider under Node,
//! `tests/oidc/provider.mjs`, installed by scripts/fetch-test-tools) on `127.0.0.1:0`, a real
//! `hitl-gate serve` signing in with it, and a cookie-keeping HTTP client that signs in through
//! the provider's own login form (no browser). It can also mint ID tokens with the provider's
//! signing key, or with another, for the verifier's negative tests.
//!
//! Users (any password): `alice` and `carol` are in the `approvers` group, `bob` is not, and
//! `dave` is an approver whose email is not verified.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::procs::{kill_group, Owner};
use super::server::{policy_with, TestServer};

pub const CLIENT_ID: &str = "hitl-gate-tests";
pub const CLIENT_SECRET: &str = "the-client-secret-of-the-tests";

/// The OIDC provider (node, in a process group of its own), stopped on drop.
pub struct Provider {
    pub issuer: String,
    /// PKCS#8 DER of the RSA key the provider signs ID tokens with (`kid` `test-key-1`).
    pub key_der: Vec<u8>,
    child: Child,
    owner: Owner,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A fresh RSA key in `dir/name.pem` (PKCS#8), and its DER.
pub fn rsa_key(dir: &Path, name: &str) -> (PathBuf, Vec<u8>) {
    let pem = dir.join(format!("{name}.pem"));
    let out = super::run(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&pem),
    );
    assert!(
        out.status.success(),
        "openssl is needed to make a test key (apt-get install openssl): {}",
        super::stderr(&out)
    );
    let text = std::fs::read_to_string(&pem).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64_decode(&b64);
    (pem, der)
}

fn base64_decode(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Base64url without padding.
pub fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// An RS256 JWT of `header` and `claims`, signed with the PKCS#8 RSA key `der`.
pub fn rs256(der: &[u8], header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let key = ring::signature::RsaKeyPair::from_pkcs8(der).expect("an RSA PKCS#8 key");
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", b64url(&sig))
}

/// An HS256 JWT signed with `secret` (what a verifier that took the client secret as a key
/// would accept).
pub fn hs256(secret: &[u8], header: &serde_json::Value, claims: &serde_json::Value) -> String {
    let input = format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    );
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", b64url(tag.as_ref()))
}

impl Provider {
    /// Stops the provider (its port is free again).
    pub fn stop(&mut self) {
        kill_group(&mut self.child);
        self.owner.kill_all();
    }

    /// Starts the provider with the gate at `gate_url` as its one client.
    pub fn start(dir: &Path, gate_url: &str) -> Provider {
        let key = rsa_key(dir, "provider-key");
        Self::start_with(gate_url, 0, key, "test-key-1")
    }

    /// Starts the provider on `port` (0: any) signing with `key` (PEM path, DER) under `kid`.
    /// Its clock is the test clock file beside the key (`clock.rs`): a server started in the
    /// same temp dir follows the same one.
    pub fn start_with(gate_url: &str, port: u16, key: (PathBuf, Vec<u8>), kid: &str) -> Provider {
        let module = super::tools::dir().join("oidc/node_modules/oidc-provider/lib/index.js");
        assert!(
            module.exists(),
            "{} is missing: run scripts/fetch-test-tools (it installs oidc-provider with npm ci)",
            module.display()
        );
        let (pem, key_der) = key;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/oidc/provider.mjs");
        let clock = super::clock::TestClock::in_dir(pem.parent().unwrap());
        let owner = Owner::new();
        let mut c = Command::new("node");
        c.arg(&script)
            .env("HITL_GATE_TEST_CLOCK", clock.path())
            .env("OIDC_PROVIDER_MODULE", &module)
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("REDIRECT_URI", format!("{gate_url}/auth/callback"))
            .env("POST_LOGOUT_URI", format!("{gate_url}/ui/signed-out"))
            .env("KEY_PEM", &pem)
            .env("KID", kid)
            .env("PORT", port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = owner
            .mark(&mut c)
            .spawn()
            .expect("node runs the test OIDC provider (apt-get install nodejs)");
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let issuer = loop {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("ISSUER ") => break l[7..].trim().to_string(),
                Some(Ok(_)) => continue,
                _ => panic!("the test OIDC provider did not start (node tests/oidc/provider.mjs)"),
            }
        };
        std::thread::spawn(move || for _ in lines {});
        Provider {
            issuer,
            key_der,
            child,
            owner,
        }
    }
}

/// A server with the web UI on, signing in with a fresh provider.
pub struct WebServer {
    pub srv: TestServer,
    pub idp: Provider,
    /// `[serve] public_url`, the origin of every form.
    pub url: String,
}

/// The `[serve]` and `[serve.oidc]` tables of a web-enabled server policy, plus `extra_top`
/// (environments, rules) before them and `oidc_extra` lines inside `[serve.oidc]`.
pub fn web_policy(
    public_url: &str,
    issuer: &str,
    secret_file: &Path,
    extra_top: &str,
    oidc_extra: &str,
) -> String {
    policy_with(&format!(
        "{extra_top}\n[serve]\npublic_url = \"{public_url}\"\n\n[serve.oidc]\nissuer = \"{issuer}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret_file = \"{}\"\nscopes = [\"email\", \"profile\", \"groups\"]\napprover_groups = [\"approvers\"]\n{oidc_extra}\n",
        secret_file.display()
    ))
}

/// A `[[serve.agent]]` table to end `oidc_extra` with: agent `name`, whose token is `token`,
/// acting for `human` (an email, so a web approver can be that human).
pub fn agent_acting_for(name: &str, token: &str, human: &str) -> String {
    format!(
        "\n[[serve.agent]]\nname = \"{name}\"\ntoken_sha256 = \"{}\"\non_behalf_of = \"{human}\"\n",
        hitl_gate::hex::sha256(token.as_bytes())
    )
}

impl WebServer {
    pub async fn start(extra_top: &str, oidc_extra: &str) -> WebServer {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let idp = Provider::start(dir.path(), &url);
        let secret = dir.path().join("client.secret");
        std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
        std::fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let policy = web_policy(&url, &idp.issuer, &secret, extra_top, oidc_extra);
        let data = dir.path().join("data");
        let srv = TestServer::start_on(listener, dir, data, &policy).await;
        WebServer { srv, idp, url }
    }
}

/// One HTTP response, read whole.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub location: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

/// A browser-less client: keeps cookies per host (ignoring paths), never follows redirects by
/// itself.
#[derive(Default)]
pub struct WebClient {
    http: reqwest::Client,
    jar: BTreeMap<String, BTreeMap<String, String>>,
    /// Sent as `Origin` on every POST unless a test says otherwise.
    pub origin: Option<String>,
    /// The URL of the last request sent.
    pub last_url: String,
}

impl WebClient {
    pub fn new(origin: &str) -> WebClient {
        WebClient {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .unwrap(),
            jar: BTreeMap::new(),
            origin: Some(origin.to_string()),
            last_url: String::new(),
        }
    }

    fn host(url: &str) -> String {
        reqwest::Url::parse(url)
            .map(|u| format!("{}:{}", u.host_str().unwrap_or(""), u.port().unwrap_or(80)))
            .unwrap_or_default()
    }

    /// The cookies this client holds for `url`'s host.
    pub fn cookies(&self, url: &str) -> BTreeMap<String, String> {
        self.jar.get(&Self::host(url)).cloned().unwrap_or_default()
    }

    /// Replaces the cookies for `url`'s host.
    pub fn set_cookies(&mut self, url: &str, cookies: BTreeMap<String, String>) {
        self.jar.insert(Self::host(url), cookies);
    }

    async fn send(&mut self, req: reqwest::RequestBuilder, url: &str) -> Resp {
        self.last_url = url.to_string();
        let cookie = self
            .cookies(url)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let req = if cookie.is_empty() {
            req
        } else {
            req.header("cookie", cookie)
        };
        let r = req.send().await.expect("request sent");
        let host = Self::host(url);
        for v in r.headers().get_all("set-cookie") {
            let v = v.to_str().unwrap_or_default();
            let first = v.split(';').next().unwrap_or_default();
            if let Some((k, val)) = first.split_once('=') {
                let jar = self.jar.entry(host.clone()).or_default();
                if val.is_empty()
                    || v.contains("Max-Age=0")
                    || v.contains("expires=Thu, 01 Jan 1970")
                {
                    jar.remove(k.trim());
                } else {
                    jar.insert(k.trim().to_string(), val.to_string());
                }
            }
        }
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let location = headers
            .get("location")
            .and_then(|l| l.to_str().ok())
            .map(|l| {
                reqwest::Url::parse(url)
                    .and_then(|base| base.join(l))
                    .map(|u| u.to_string())
                    .unwrap_or_else(|_| l.to_string())
            });
        let body = r.text().await.unwrap_or_default();
        Resp {
            status,
            location,
            headers,
            body,
        }
    }

    pub async fn get(&mut self, url: &str) -> Resp {
        let req = self.http.get(url);
        self.send(req, url).await
    }

    /// A GET with more headers.
    pub async fn get_with(&mut self, url: &str, headers: &[(&str, &str)]) -> Resp {
        let mut req = self.http.get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req, url).await
    }

    /// A form POST with `self.origin` as its Origin (if set).
    pub async fn post(&mut self, url: &str, form: &[(&str, &str)]) -> Resp {
        let origin = self.origin.clone();
        self.post_from(url, form, origin.as_deref()).await
    }

    /// A form POST with the given Origin header (or none).
    pub async fn post_from(
        &mut self,
        url: &str,
        form: &[(&str, &str)],
        origin: Option<&str>,
    ) -> Resp {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
        self.post_with(url, form, &headers).await
    }

    /// A form POST with exactly these extra headers.
    pub async fn post_with(
        &mut self,
        url: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = self.http.post(url).form(form);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        self.send(req, url).await
    }

    /// Follows redirects from `resp` while they stay off `stop_at`'s host; returns the last
    /// response (whose `location`, if any, points at `stop_at`).
    pub async fn follow_until(&mut self, mut resp: Resp, stop_at: &str) -> Resp {
        for _ in 0..10 {
            match resp.location.clone() {
                Some(l) if Self::host(&l) != Self::host(stop_at) => resp = self.get(&l).await,
                _ => return resp,
            }
        }
        panic!("too many redirects");
    }

    /// Signs in at `gate` as `user` through the provider's login form, coming back to
    /// `return_to`; returns the callback URL the provider sent the browser to (not yet opened).
    pub async fn login_at_provider(&mut self, gate: &str, user: &str, return_to: &str) -> String {
        let start = self
            .get(&format!("{gate}/ui/login?return_to={return_to}"))
            .await;
        assert_eq!(start.status, 303, "{}", start.body);
        self.provider_login(start, gate, user).await
    }

    /// From the gate's redirect to the provider: the provider's login form, filled in as
    /// `user`, up to the redirect back to the gate. Returns that callback URL.
    pub async fn provider_login(&mut self, to_provider: Resp, gate: &str, user: &str) -> String {
        let r = self.follow_until(to_provider, gate).await;
        if let Some(l) = r.location.clone() {
            // The provider still had a session for this user: straight back.
            return l;
        }
        assert_eq!(r.status, 200, "the provider's login form: {}", r.body);
        let action = r
            .body
            .split("action=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("the login form's action")
            .to_string();
        let action = reqwest::Url::parse(&self.last_url)
            .unwrap()
            .join(&action)
            .unwrap()
            .to_string();
        let posted = self
            .post_from(
                &action,
                &[("prompt", "login"), ("login", user), ("password", "any")],
                None,
            )
            .await;
        let back = self.follow_until(posted, gate).await;
        back.location
            .unwrap_or_else(|| panic!("the provider did not send the browser back: {}", back.body))
    }

    /// Signs in as `user` and opens the callback: the session cookie is set.
    pub async fn sign_in(&mut self, gate: &str, user: &str) {
        let callback = self.login_at_provider(gate, user, "/ui").await;
        let r = self.get(&callback).await;
        assert_eq!(r.status, 303, "callback: {}", r.body);
    }

    /// Opens request `id`'s page at the gate `base` (for its CSRF token) and posts its decision
    /// form with `fields`.
    pub async fn decide(&mut self, base: &str, id: &str, fields: &[(&str, &str)]) -> Resp {
        let page = self.get(&format!("{base}/ui/requests/{id}")).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = Self::csrf(&page.body);
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        self.post(&format!("{base}/ui/requests/{id}/decision"), &form)
            .await
    }

    /// The CSRF token of the page in `body` (from its forms).
    pub fn csrf(body: &str) -> String {
        body.split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("a CSRF token on the page")
            .to_string()
    }
}
