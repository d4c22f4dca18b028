//! The shim's client for the approval server: blocking reqwest with rustls, used only on the
//! gated (slow) path, and created outside any tokio runtime (reqwest's blocking client panics
//! inside one).
//!
//! Everything it needs comes from the policy's `[approval]` section: the URL (or the URLs of a
//! server's replicas), the token file and (checked by the caller) the pinned public key. A URL
//! that cannot be reached or answers 503 hands the call to the next one. Errors say whether
//! retrying can help: a lost connection or a 5xx is [`ClientError::Transient`]; a 429 is
//! [`ClientError::Busy`], with the server's `Retry-After` (bounded); any other 4xx is
//! [`ClientError::Fatal`]. A 401 names the token file whose token the server does not know.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use reqwest::blocking::{Client as Http, RequestBuilder};
use serde::de::DeserializeOwned;

use crate::api::{CreateRequest, ErrorBody, Outcome, PublicKey, RequestView, WhoAmI};
use crate::policy::schema::Approval;

/// A failed call.
#[derive(Debug)]
pub enum ClientError {
    /// The server could not be reached or is unavailable for now; the same call may succeed.
    Transient(String),
    /// The server asked this agent to slow down (429): the same call may succeed after the
    /// pause it gave in `Retry-After`, bounded to [`MAX_RETRY_AFTER`].
    Busy(String, Duration),
    /// The server refused the call; repeating it will not help.
    Fatal(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Transient(m) | ClientError::Busy(m, _) | ClientError::Fatal(m) => {
                f.write_str(m)
            }
        }
    }
}

/// Why one call failed: `Moved` when the next URL may answer (no connection, or a 503).
enum Failed {
    Moved(ClientError),
    Stop(ClientError),
}

/// A connection to the approval server (one URL, or the replicas of one server), as one agent.
const NOT_CONFIGURED: &str =
    "no approval server is configured ([approval] url, token_file and public_key in the policy)";

#[derive(Clone)]
pub struct Client {
    http: Http,
    /// The base URLs, in the policy's order.
    bases: Vec<String>,
    /// The one in use: a connection failure or a 503 moves on to the next.
    current: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    token: String,
    /// Where the token was read from (named when the server refuses it).
    token_file: std::path::PathBuf,
}

impl Client {
    /// Builds the client from `[approval]`. Fails when it is not configured or the token file is
    /// unusable (missing, empty, or readable by others).
    pub fn from_config(a: &Approval) -> Result<Client, String> {
        let token_file = a.token_file.as_deref().ok_or(NOT_CONFIGURED)?;
        Self::with_token_file(a, token_file)
    }

    /// Like [`Client::from_config`], with the token in `token_file` (a lockdown writer's own).
    pub fn with_token_file(a: &Approval, token_file: &std::path::Path) -> Result<Client, String> {
        let url = a.url.as_ref().ok_or(NOT_CONFIGURED)?;
        let token = read_token(token_file)?;
        // The agent's HTTP_PROXY / ALL_PROXY are ignored: a proxy of its choosing could rewrite
        // the diff or answer with an old approval. A proxy, if one is needed, is set in the
        // policy.
        let mut builder = Http::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(5))
            .timeout(None::<Duration>)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("hitl-gate/", env!("CARGO_PKG_VERSION")));
        if let Some(proxy) = &a.proxy {
            builder = builder.proxy(
                reqwest::Proxy::all(proxy)
                    .map_err(|e| format!("[approval] proxy {proxy:?}: {e}"))?,
            );
        }
        if let Some(ca) = &a.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| format!("[approval] ca_file {}: {e}", ca.display()))?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("[approval] ca_file {}: {e}", ca.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder
            .build()
            .map_err(|e| format!("cannot set up the HTTP client: {e}"))?;
        Ok(Client {
            http,
            bases: url
                .list()
                .iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            current: Default::default(),
            token,
            token_file: token_file.to_path_buf(),
        })
    }

    /// The base URL in use.
    pub fn base(&self) -> &str {
        &self.bases[self.current.load(std::sync::atomic::Ordering::Relaxed) % self.bases.len()]
    }

    /// Sends the request `build` makes for a base URL (`<base>/api/v1<path>` is the caller's),
    /// to the URL in use; when it cannot be reached or answers 503, to the next one, each at
    /// most once.
    fn call<T: DeserializeOwned>(
        &self,
        build: impl Fn(&str) -> RequestBuilder,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let mut last = None;
        for _ in 0..self.bases.len() {
            let base = self.base().to_string();
            match self.call_one(&base, build(&format!("{base}/api/v1")), timeout) {
                Err(Failed::Moved(e)) => {
                    last = Some(e);
                    self.current
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                Err(Failed::Stop(e)) => return Err(e),
                Ok(v) => return Ok(v),
            }
        }
        Err(last.unwrap_or_else(|| ClientError::Fatal("no approval server URL".into())))
    }

    fn call_one<T: DeserializeOwned>(
        &self,
        base: &str,
        req: RequestBuilder,
        timeout: Duration,
    ) -> Result<T, Failed> {
        let resp = req
            .bearer_auth(&self.token)
            .timeout(timeout)
            .send()
            .map_err(|e| {
                Failed::Moved(ClientError::Transient(format!("cannot reach {base}: {e}")))
            })?;
        let status = resp.status();
        let pause = retry_after(resp.headers());
        if status.is_success() {
            return resp.json().map_err(|e| {
                Failed::Stop(ClientError::Transient(format!(
                    "unreadable answer from {base}: {e}"
                )))
            });
        }
        let body: Option<ErrorBody> = resp.json().ok();
        let msg = match body {
            Some(b) if status.as_u16() == 401 => unknown_token(base, &self.token_file, &b.message),
            Some(b) => format!("{base} answered {status} {}: {}", b.code, b.message),
            None if status.as_u16() == 401 => unknown_token(base, &self.token_file, "-"),
            None => format!("{base} answered {status}"),
        };
        Err(if status.as_u16() == 503 {
            Failed::Moved(ClientError::Transient(msg))
        } else if status.as_u16() == 429 {
            Failed::Stop(ClientError::Busy(msg, pause))
        } else if status.is_server_error() {
            Failed::Stop(ClientError::Transient(msg))
        } else {
            Failed::Stop(ClientError::Fatal(msg))
        })
    }

    /// `POST /requests`, with the request's nonce as its `Idempotency-Key`: a create retried
    /// after a lost answer (here or on another replica) returns the request the first made.
    pub fn create(&self, req: &CreateRequest) -> Result<RequestView, ClientError> {
        self.call(
            |api| {
                self.http
                    .post(format!("{api}/requests"))
                    .header(crate::api::IDEMPOTENCY_KEY, &req.nonce)
                    .json(req)
            },
            Duration::from_secs(30),
        )
    }

    /// `GET /requests/{id}?wait=SECS&approvals=N`: returns when the request is decided, when
    /// its number of approvals is no longer `approvals`, or when the wait is over.
    pub fn wait(&self, id: &str, secs: u64, approvals: usize) -> Result<RequestView, ClientError> {
        self.call(
            |api| {
                self.http.get(format!(
                    "{api}/requests/{id}?wait={secs}&approvals={approvals}"
                ))
            },
            Duration::from_secs(secs + 15),
        )
    }

    /// `POST /requests/{id}/cancel`.
    pub fn cancel(&self, id: &str) -> Result<RequestView, ClientError> {
        self.post(id, "cancel")
    }

    /// `POST /requests/{id}/detach`: this shim stops waiting; the request stays pending.
    pub fn detach(&self, id: &str) -> Result<RequestView, ClientError> {
        self.post(id, "detach")
    }

    /// `POST /requests/{id}/claim`: this shim runs the approval (`claim` is its own random
    /// value, so a retry is the same claim); refused (409, fatal) when another claim holds it.
    pub fn claim(&self, id: &str, claim: &str) -> Result<RequestView, ClientError> {
        let body = serde_json::json!({ "claim": claim });
        self.call(
            |api| {
                self.http
                    .post(format!("{api}/requests/{id}/claim"))
                    .json(&body)
            },
            Duration::from_secs(10),
        )
    }

    /// `POST /requests/{id}/supersede`: a new request replaces this one.
    pub fn supersede(&self, id: &str, reason: &str) -> Result<RequestView, ClientError> {
        let body = serde_json::json!({ "reason": reason });
        self.call(
            |api| {
                self.http
                    .post(format!("{api}/requests/{id}/supersede"))
                    .json(&body)
            },
            Duration::from_secs(10),
        )
    }

    fn post(&self, id: &str, what: &str) -> Result<RequestView, ClientError> {
        self.call(
            |api| self.http.post(format!("{api}/requests/{id}/{what}")),
            Duration::from_secs(10),
        )
    }

    /// `POST /requests/{id}/outcome`.
    pub fn outcome(&self, id: &str, o: &Outcome) -> Result<RequestView, ClientError> {
        self.call(
            |api| {
                self.http
                    .post(format!("{api}/requests/{id}/outcome"))
                    .json(o)
            },
            Duration::from_secs(10),
        )
    }

    /// `POST /no-changes`: records a plan with no changes that runs without asking.
    pub fn no_changes(&self, req: &CreateRequest) -> Result<serde_json::Value, ClientError> {
        self.call(
            |api| self.http.post(format!("{api}/no-changes")).json(req),
            Duration::from_secs(30),
        )
    }

    /// `GET /whoami`: who the server takes this token for.
    pub fn whoami(&self) -> Result<WhoAmI, ClientError> {
        self.call(
            |api| self.http.get(format!("{api}/whoami")),
            Duration::from_secs(10),
        )
    }

    /// `GET /public-key`.
    pub fn public_key(&self) -> Result<PublicKey, ClientError> {
        self.call(
            |api| self.http.get(format!("{api}/public-key")),
            Duration::from_secs(10),
        )
    }
}

/// What a 401 tells the agent: the token file whose token `base` does not know.
fn unknown_token(base: &str, token_file: &std::path::Path, why: &str) -> String {
    format!(
        "{base} answered 401 Unauthorized: the server does not know the agent token in {} \
         ({why}); its SHA-256 must be the token_sha256 of a [[serve.agent]] in the server's \
         policy (`hitl-gate doctor` shows it)",
        token_file.display()
    )
}

/// The longest pause a server's `Retry-After` can impose on the shim.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// The pause `Retry-After` asks for (delay-seconds), between 1 s and [`MAX_RETRY_AFTER`]; 2 s
/// when it is absent or not a number.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Duration {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map_or(Duration::from_secs(2), Duration::from_secs)
        .clamp(Duration::from_secs(1), MAX_RETRY_AFTER)
}

/// Reads the agent token: the first line of the file, which must not be readable by others.
pub fn read_token(path: &std::path::Path) -> Result<String, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("token file {}: {e}", path.display()))?;
    if meta.mode() & 0o004 != 0 {
        return Err(format!(
            "token file {} is readable by others (mode {:o}); chmod o-r it",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("token file {}: {e}", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim().to_string();
    if token.is_empty() {
        return Err(format!("token file {} is empty", path.display()));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use reqwest::header::HeaderMap;

    #[test]
    fn retry_after_is_read_and_bounded() {
        let after = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(reqwest::header::RETRY_AFTER, v.parse().unwrap());
            super::retry_after(&h)
        };
        assert_eq!(after("2"), Duration::from_secs(2));
        assert_eq!(after(" 7 "), Duration::from_secs(7));
        assert_eq!(after("0"), Duration::from_secs(1));
        assert_eq!(after("86400"), super::MAX_RETRY_AFTER);
        assert_eq!(
            after("Wed, 21 Oct 2026 07:28:00 GMT"),
            Duration::from_secs(2)
        );
        assert_eq!(
            super::retry_after(&HeaderMap::new()),
            Duration::from_secs(2)
        );
    }
}
