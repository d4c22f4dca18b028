//! A TEST-ONLY fake Kubernetes API server, so the real pinned kubectl and helm can run offline.
//!
//! No real kube-apiserver can be had offline. This in-memory stand-in serves the HTTP surface
//! that kubectl 1.35.2, helm 4.1.4 and helm 3.17.2 were observed to need: discovery (with short
//! names), OpenAPI v3 (a `patch` operation per resource, empty schemas), GET, list (equality
//! label selectors), POST, PUT, DELETE, PATCH (merge patches per RFC 7386; strategic-merge
//! patches and server-side apply the same, except that lists of objects with a `name` merge by
//! name; JSON patch add/replace/remove), `dryRun=All` (nothing stored, the old resourceVersion
//! kept), the deployments' `scale` subresource (kubectl scale PATCHes it), and the protobuf
//! Secrets helm keeps its releases in. It always answers JSON. It is good enough for the tools
//! to talk to and models no Kubernetes semantics beyond that: no watch, auth, validation,
//! field ownership or controllers. It lives only under `tests/` and is never shipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// The bearer token every kubeconfig written by [`FakeKube::kubeconfig`] carries.
pub const TOKEN: &str = "fake-kube-token";
/// With [`FakeKube::rbac`]: a token bound to a read-only role (get, list, watch).
pub const READ_TOKEN: &str = "fake-read-token";
/// With [`FakeKube::rbac`]: a token bound to a role that may also write.
pub const WRITE_TOKEN: &str = "fake-write-token";
/// With [`FakeKube::rbac`]: a token whose role may write, but an admission policy refuses its
/// every write that is not a server-side dry run (what lockdown's runner is advised to hold, so
/// that diffs work and the credential can change nothing).
pub const DRY_RUN_TOKEN: &str = "fake-dry-run-token";

/// One resource type the fake serves (its singular name is its kind in lower case).
struct Kind {
    gv: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
}

const fn kind(
    gv: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
) -> Kind {
    Kind {
        gv,
        plural,
        kind,
        namespaced,
        short,
    }
}

const KINDS: &[Kind] = &[
    kind("v1", "configmaps", "ConfigMap", true, &["cm"]),
    kind("v1", "secrets", "Secret", true, &[]),
    kind("v1", "services", "Service", true, &["svc"]),
    kind("v1", "namespaces", "Namespace", false, &["ns"]),
    kind("v1", "pods", "Pod", true, &["po"]),
    kind("apps/v1", "deployments", "Deployment", true, &["deploy"]),
];

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The raw (still percent-encoded) query string, empty when there was none.
    pub query: String,
    pub content_type: String,
    /// `dryRun: ["All"]` in a DELETE's `DeleteOptions` body (kubectl puts it there, not in the
    /// query string).
    pub body_dry_run: bool,
    /// The bearer token it carried, if any.
    pub token: Option<String>,
}

impl Request {
    /// Whether this request asked for a server-side dry run (in the query or, for DELETE, in
    /// its body).
    pub fn dry_run(&self) -> bool {
        self.query.contains("dryRun=All") || self.body_dry_run
    }

    /// Whether this request can change anything: not a GET, and not a server-side dry run.
    pub fn writes(&self) -> bool {
        self.method != "GET" && !self.dry_run()
    }
}

/// (group/version, plural, namespace or "", name)
type Key = (String, String, String, String);

#[derive(Default)]
struct Store {
    objects: BTreeMap<Key, Value>,
    /// The last resourceVersion handed out; bumped by real writes only.
    rv: u64,
    uids: u64,
    log: Vec<Request>,
    /// Refuse (401) requests without `Authorization: Bearer` [`TOKEN`].
    require_token: bool,
    /// Authorize as RBAC would: [`READ_TOKEN`] may only read, [`WRITE_TOKEN`] may write, any
    /// other token is refused (401).
    rbac: bool,
}

type Shared = Arc<Mutex<Store>>;

/// A running fake API server on `127.0.0.1` (plain http, or https with [`FakeKube::start_tls`]),
/// stopped on drop or by [`FakeKube::stop`].
pub struct FakeKube {
    /// `http://127.0.0.1:PORT` (or `https://…`)
    pub url: String,
    /// The CA certificate of an https fake, which its kubeconfigs name.
    pub ca: Option<PathBuf>,
    store: Shared,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeKube {
    /// Starts the fake (on its own thread and runtime, so blocking test code can run the tools
    /// while it serves). Holds the `default` namespace.
    pub async fn start() -> FakeKube {
        Self::start_blocking()
    }

    /// [`FakeKube::start`] for tests without a runtime.
    pub fn start_blocking() -> FakeKube {
        Self::serve(None)
    }

    /// The fake over https, with a throwaway CA made in `dir` (kubectl runs a kubeconfig's exec
    /// credential plugin only for https servers).
    pub async fn start_tls(dir: &Path) -> FakeKube {
        let (cert, key, ca) = super::test_certificate(dir);
        let tls = hitl_gate::server::tls::load(&cert, &key).unwrap();
        Self::serve(Some((tls, ca)))
    }

    fn serve(tls: Option<(Arc<rustls::ServerConfig>, PathBuf)>) -> FakeKube {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the fake kube");
        listener.set_nonblocking(true).unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}", listener.local_addr().unwrap());
        let (tls, ca) = tls.unzip();
        let store: Shared = Arc::default();
        let router = axum::Router::new()
            .fallback(handle)
            .with_state(store.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                match tls {
                    None => tokio::select! {
                        r = axum::serve(listener, router) => r.expect("fake kube serve"),
                        _ = rx => {}
                    },
                    Some(tls) => tokio::select! {
                        r = axum::serve(
                            hitl_gate::server::tls::TlsListener::new(listener, tls),
                            router,
                        ) => r.expect("fake kube serve"),
                        _ = rx => {}
                    },
                }
            });
        });
        let fake = FakeKube {
            url,
            ca,
            store,
            stop: Some(tx),
            thread: Some(thread),
        };
        fake.put(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}}));
        fake
    }

    /// Stops the server and waits for its thread.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap()
    }

    /// Writes a kubeconfig into `dir/kubeconfig` with one context per `(context, namespace)`,
    /// each with its own cluster entry (named after the context) pointing at this server and a
    /// user with the static bearer token [`TOKEN`]. The first context is the current one.
    pub fn kubeconfig(&self, dir: &Path, contexts: &[(&str, &str)]) -> PathBuf {
        assert!(!contexts.is_empty(), "a kubeconfig needs a context");
        let mut y = String::from("apiVersion: v1\nkind: Config\nclusters:\n");
        for (ctx, _) in contexts {
            y += &format!("- name: {ctx}\n  cluster:\n    server: {}\n", self.url);
            if let Some(ca) = &self.ca {
                y += &format!("    certificate-authority: {}\n", ca.display());
            }
        }
        y += &format!("users:\n- name: fake-user\n  user:\n    token: {TOKEN}\ncontexts:\n");
        for (ctx, ns) in contexts {
            y += &format!(
                "- name: {ctx}\n  context:\n    cluster: {ctx}\n    user: fake-user\n    namespace: {ns}\n"
            );
        }
        y += &format!("current-context: {}\n", contexts[0].0);
        std::fs::create_dir_all(dir).unwrap();
        let p = dir.join("kubeconfig");
        std::fs::write(&p, y).unwrap();
        p
    }

    /// The stored object, e.g. `get("apps/v1", "deployments", "default", "web")`; namespace ""
    /// for cluster-scoped kinds.
    pub fn get(&self, gv: &str, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = (gv.into(), plural.into(), namespace.into(), name.into());
        self.lock().objects.get(&key).cloned()
    }

    /// The names of the stored objects of a kind in `namespace` (sorted).
    pub fn names(&self, gv: &str, plural: &str, namespace: &str) -> Vec<String> {
        let s = self.lock();
        let keys = s.objects.keys();
        keys.filter(|k| k.0 == gv && k.1 == plural && k.2 == namespace)
            .map(|k| k.3.clone())
            .collect()
    }

    /// Stores an object directly (as a real create or replace would), bypassing HTTP.
    /// From now on, refuses (401) every request without the kubeconfig's bearer token.
    pub fn require_token(&self) {
        self.lock().require_token = true;
    }

    /// From now on, authorizes requests by token as RBAC would: [`READ_TOKEN`] may get, list and
    /// watch, and gets 403 for anything else (a server-side dry run is authorized like the change
    /// it would make, as in Kubernetes); [`WRITE_TOKEN`] may do anything; other requests get 401.
    pub fn rbac(&self) {
        let mut s = self.lock();
        s.rbac = true;
        s.require_token = false;
    }

    /// Writes `dir/<file>`: a kubeconfig like [`FakeKube::kubeconfig`]'s, whose user carries
    /// `token`.
    pub fn kubeconfig_with_token(
        &self,
        dir: &Path,
        file: &str,
        contexts: &[(&str, &str)],
        token: &str,
    ) -> PathBuf {
        let tmp = dir.join(format!(".{file}.tmp"));
        let text = std::fs::read_to_string(self.kubeconfig(&tmp, contexts)).unwrap();
        std::fs::remove_dir_all(&tmp).unwrap();
        let p = dir.join(file);
        std::fs::write(&p, text.replace(TOKEN, token)).unwrap();
        p
    }

    /// Puts namespace `ns` and a one-replica Deployment `name` (labels `app: <name>`) in it.
    pub fn put_deployment(&self, ns: &str, name: &str) -> Value {
        self.put(
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        );
        self.put(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}}},
        }))
    }

    pub fn put(&self, obj: Value) -> Value {
        let gv = obj["apiVersion"].as_str().expect("apiVersion").to_string();
        let kind = obj["kind"].as_str().expect("kind");
        let k = KINDS
            .iter()
            .find(|k| k.gv == gv && k.kind == kind)
            .expect("a served kind");
        let ns = if k.namespaced {
            obj["metadata"]["namespace"].as_str().unwrap_or("default")
        } else {
            ""
        };
        let key = (gv.clone(), k.plural.into(), ns.into(), name_of(&obj).into());
        let mut s = self.lock();
        let old = s.objects.get(&key).cloned();
        commit(&mut s, k, key, old.as_ref(), obj, false)
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().log.clone()
    }

    /// Every request received since the last call (or the start), in order; the log is emptied.
    pub fn take_requests(&self) -> Vec<Request> {
        std::mem::take(&mut self.lock().log)
    }

    /// The last resourceVersion handed out: it changes exactly when something is stored.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn name_of(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or("")
}

/// A failure: the HTTP status, the Status `reason` and its message.
type Fail = (StatusCode, &'static str, String);

fn fail(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Fail {
    (code, reason, message.into())
}

fn not_found(what: String) -> Fail {
    fail(StatusCode::NOT_FOUND, "NotFound", what)
}

fn qualified(k: &Kind, name: &str) -> String {
    let group = k.gv.split_once('/').map(|(g, _)| format!(".{g}"));
    format!("{}{} \"{name}\"", k.plural, group.unwrap_or_default())
}

fn query_map(q: &str) -> BTreeMap<String, String> {
    let pairs = q
        .split('&')
        .map(|kv| kv.split_once('=').unwrap_or((kv, "")));
    pairs.map(|(k, v)| (unescape(k), unescape(v))).collect()
}

fn unescape(s: &str) -> String {
    let (b, mut out, mut i) = (s.as_bytes(), Vec::new(), 0);
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (b[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(v)) => (out.push(v), i += 3).1,
            (b'+', _) => (out.push(b' '), i += 1).1,
            (c, _) => (out.push(c), i += 1).1,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Equality label selectors: `a=b,c==d,e!=f,g` (`g`: the label is set).
fn selected(sel: &str, labels: &Value) -> bool {
    sel.split(',').filter(|t| !t.is_empty()).all(|term| {
        let label = |k: &str| labels[k.trim()].as_str().map(str::to_string);
        match term.split_once('=') {
            Some((k, v)) if k.ends_with('!') => {
                label(&k[..k.len() - 1]).as_deref() != Some(v.trim())
            }
            Some((k, v)) => label(k).as_deref() == Some(v.trim_start_matches('=').trim()),
            None => label(term).is_some(),
        }
    })
}

async fn handle(
    State(store): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let ct = ct.unwrap_or("").to_string();
    let mut s = store.lock().unwrap();
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(String::from);
    let rbac_known =
        [READ_TOKEN, WRITE_TOKEN, DRY_RUN_TOKEN].contains(&token.as_deref().unwrap_or(""));
    if (s.require_token && token.as_deref() != Some(TOKEN)) || (s.rbac && !rbac_known) {
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Unauthorized", "code": 401})),
        )
            .into_response();
    }
    let (path, query) = (
        uri.path().to_string(),
        uri.query().unwrap_or("").to_string(),
    );
    let body_dry_run = method == Method::DELETE
        && serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|o| o["dryRun"].as_array().cloned())
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    let log = Request {
        method: method.to_string(),
        path,
        query,
        content_type: ct.clone(),
        body_dry_run,
        token: token.clone(),
    };
    let writes = log.writes();
    s.log.push(log);
    if s.rbac && uri.path() == SSAR {
        return access_review(token.as_deref(), &body);
    }
    if s.rbac && writes && token.as_deref() == Some(DRY_RUN_TOKEN) {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{method} {} is denied by admission policy: this identity may only make server-side dry runs", uri.path()),
                "reason": "Forbidden", "code": 403})),
        )
            .into_response();
    }
    if s.rbac && method != Method::GET && token.as_deref() == Some(READ_TOKEN) {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{method} {} is forbidden: the read-only role may only get, list and watch", uri.path()),
                "reason": "Forbidden", "code": 403})),
        )
            .into_response();
    }
    let answer = match discovery(uri.path()) {
        Some(v) => Ok((StatusCode::OK, v)),
        None => objects(&mut s, &method, &uri, &ct, &body),
    };
    let (code, body) = answer.unwrap_or_else(|(code, reason, message)| {
        let st = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code.as_u16()});
        (code, st)
    });
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `/version`, `/api`, `/apis`, the resource lists and OpenAPI v3.
fn discovery(path: &str) -> Option<Value> {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let gv = |g: &str, v: &str| format!("{g}/{v}");
    Some(match segs.as_slice() {
        ["version"] => json!({"major": "1", "minor": "35", "gitVersion": "v1.35.2",
            "gitCommit": "fake", "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.25", "compiler": "gc", "platform": "linux/amd64"}),
        ["api"] => json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ["apis"] => {
            let apps = json!({"groupVersion": "apps/v1", "version": "v1"});
            json!({"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [{"name": "apps", "versions": [apps], "preferredVersion": apps}]})
        }
        ["api", "v1"] => resource_list("v1"),
        ["apis", g, v] if KINDS.iter().any(|k| k.gv == gv(g, v)) => resource_list(&gv(g, v)),
        ["openapi", "v3"] => {
            let paths = ["v1", "apps/v1"].map(|gv| {
                let p = prefix(gv);
                let url = json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=0")});
                (p, url)
            });
            json!({"paths": Map::from_iter(paths)})
        }
        ["openapi", "v3", "api", "v1"] => openapi_doc("v1"),
        ["openapi", "v3", "apis", g, v] => openapi_doc(&gv(g, v)),
        _ => return None,
    })
}

/// `/api/v1/…` and `/apis/GROUP/VERSION/…`: `[namespaces/NS/]PLURAL[/NAME[/scale]]`.
fn objects(
    s: &mut Store,
    method: &Method,
    uri: &Uri,
    ct: &str,
    body: &[u8],
) -> Result<(StatusCode, Value), Fail> {
    let segs: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let (gv, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("v1".to_string(), rest),
        ["apis", g, v, rest @ ..] => (format!("{g}/{v}"), rest),
        _ => return Err(not_found(format!("no route {}", uri.path()))),
    };
    let (ns, plural, name, sub) = match rest {
        ["namespaces", ns, plural, more @ ..] => (*ns, *plural, more.first(), more.get(1)),
        [plural, more @ ..] => ("", *plural, more.first(), more.get(1)),
        [] => return Err(not_found("no resource".into())),
    };
    let k = KINDS.iter().find(|k| k.gv == gv && k.plural == plural);
    let k = k.ok_or_else(|| {
        not_found(format!(
            "the server could not find the requested resource ({plural})"
        ))
    })?;
    if sub.is_some_and(|s| *s != "scale" || k.kind != "Deployment") {
        return Err(not_found("no such subresource".into()));
    }
    let ns = if k.namespaced { ns } else { "" };
    let key = |name: &str| {
        (
            gv.clone(),
            plural.to_string(),
            ns.to_string(),
            name.to_string(),
        )
    };
    let q = query_map(uri.query().unwrap_or(""));
    let mut dry = q.get("dryRun").is_some_and(|v| v == "All");
    let Some(name) = name else {
        return match *method {
            Method::GET => Ok((StatusCode::OK, list(s, k, ns, &q))),
            Method::POST => {
                let obj = parse_body(ct, body)?;
                let name = name_of(&obj).to_string();
                if name.is_empty() {
                    return Err(fail(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "Invalid",
                        "metadata.name: Required value",
                    ));
                }
                if s.objects.contains_key(&key(&name)) {
                    let msg = format!("{} already exists", qualified(k, &name));
                    return Err(fail(StatusCode::CONFLICT, "AlreadyExists", msg));
                }
                Ok((
                    StatusCode::CREATED,
                    commit(s, k, key(&name), None, obj, dry),
                ))
            }
            _ => Err(fail(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                method.as_str(),
            )),
        };
    };
    let old = s.objects.get(&key(name)).cloned();
    let scale = sub.is_some();
    let view = |o: &Value| if scale { scale_of(o) } else { o.clone() };
    let apply = ct.starts_with("application/apply-patch");
    let new = match (method, &old) {
        (&Method::GET, Some(o)) => return Ok((StatusCode::OK, view(o))),
        (&Method::DELETE, Some(o)) => {
            let opts: Value = serde_json::from_slice(body).unwrap_or_default();
            dry |= opts["dryRun"]
                .as_array()
                .is_some_and(|a| a.iter().any(|v| v == "All"));
            if !dry {
                s.objects.remove(&key(name));
                s.rv += 1;
            }
            return Ok((StatusCode::OK, o.clone()));
        }
        (&Method::PUT, Some(_)) => parse_body(ct, body)?,
        (&Method::PATCH, _) if old.is_some() || apply => {
            let mut target = old.as_ref().map(view).unwrap_or_else(|| json!({}));
            patch(&mut target, ct, body)
                .map_err(|e| fail(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", e))?;
            target
        }
        (&Method::GET | &Method::DELETE | &Method::PUT | &Method::PATCH, _) => {
            return Err(not_found(format!("{} not found", qualified(k, name))))
        }
        (m, _) => {
            return Err(fail(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowed",
                m.as_str(),
            ))
        }
    };
    let new = match &old {
        Some(o) if scale => {
            let mut d = o.clone();
            d["spec"]["replicas"] = new["spec"]["replicas"].clone();
            d
        }
        _ => new,
    };
    let code = if old.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((code, view(&commit(s, k, key(name), old.as_ref(), new, dry))))
}

fn list(s: &Store, k: &Kind, ns: &str, q: &BTreeMap<String, String>) -> Value {
    let sel = q.get("labelSelector").map(String::as_str).unwrap_or("");
    let items: Vec<&Value> = s
        .objects
        .iter()
        .filter(|(key, o)| {
            key.0 == k.gv
                && key.1 == k.plural
                && (ns.is_empty() || key.2 == ns)
                && selected(sel, &o["metadata"]["labels"])
        })
        .map(|(_, o)| o)
        .collect();
    json!({"kind": format!("{}List", k.kind), "apiVersion": k.gv,
        "metadata": {"resourceVersion": s.rv.to_string()}, "items": items})
}

/// Stores `new` under `key` (unless `dry`) with its server-maintained metadata; returns it.
fn commit(s: &mut Store, k: &Kind, key: Key, old: Option<&Value>, new: Value, dry: bool) -> Value {
    let mut new = if new.is_object() { new } else { json!({}) };
    new["apiVersion"] = json!(k.gv);
    new["kind"] = json!(k.kind);
    if let Some(Value::Object(sd)) = new.as_object_mut().unwrap().remove("stringData") {
        for (n, v) in sd {
            new["data"][n] = json!(b64(v.as_str().unwrap_or("").as_bytes()));
        }
    }
    let was = |f: &str| old.map(|o| o["metadata"][f].clone()).unwrap_or_default();
    let changed = old.is_none_or(|o| o.get("spec") != new.get("spec"));
    if old.is_none() {
        s.uids += 1;
    }
    if !dry {
        s.rv += 1;
    }
    if !new["metadata"].is_object() {
        new["metadata"] = json!({});
    }
    let m = &mut new["metadata"];
    m["name"] = json!(key.3);
    if k.namespaced {
        m["namespace"] = json!(key.2);
    }
    m["uid"] = json!(format!("00000000-0000-4000-8000-{:012}", s.uids));
    m["uid"] = old.map_or(m["uid"].take(), |_| was("uid"));
    m["creationTimestamp"] = old.map_or_else(|| json!(now()), |_| was("creationTimestamp"));
    m["generation"] = json!(was("generation").as_i64().unwrap_or(0) + i64::from(changed));
    // A dry run keeps the old resourceVersion, or every diff would show it.
    m["resourceVersion"] = if dry {
        was("resourceVersion")
    } else {
        json!(s.rv.to_string())
    };
    m.as_object_mut().unwrap().retain(|_, v| !v.is_null());
    if !dry {
        s.objects.insert(key, new.clone());
    }
    new
}

/// A deployment's `autoscaling/v1` Scale.
fn scale_of(d: &Value) -> Value {
    let m = &d["metadata"];
    let meta = [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ];
    let meta = Map::from_iter(meta.map(|f| (f.to_string(), m[f].clone())));
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
        "spec": {"replicas": d["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": d["status"]["replicas"].as_i64().unwrap_or(0)}})
}

fn parse_body(ct: &str, body: &[u8]) -> Result<Value, Fail> {
    let v = if ct.starts_with("application/vnd.kubernetes.protobuf") {
        proto::secret(body).ok_or("undecodable protobuf (only Secrets are understood)".into())
    } else {
        serde_json::from_slice(body).map_err(|e| format!("the fake takes JSON bodies only: {e}"))
    };
    v.map_err(|e| fail(StatusCode::BAD_REQUEST, "BadRequest", e))
}

fn patch(target: &mut Value, ct: &str, body: &[u8]) -> Result<(), String> {
    let p: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    match ct.split(';').next().unwrap_or("") {
        "application/merge-patch+json" => merge(target, &p, false),
        "application/strategic-merge-patch+json" | "application/apply-patch+yaml" => {
            merge(target, &p, true)
        }
        "application/json-patch+json" => {
            for op in p.as_array().ok_or("a JSON patch is an array")? {
                json_patch_op(target, op)?;
            }
        }
        other => return Err(format!("unsupported patch type {other:?}")),
    }
    Ok(())
}

/// RFC 7386; with `strategic`, `$`-directives are dropped and lists of objects that all have a
/// `name` merge element by element.
fn merge(target: &mut Value, patch: &Value, strategic: bool) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    let t = target.as_object_mut().unwrap();
    for (key, v) in p {
        if strategic && key.starts_with('$') {
            continue;
        }
        let named = |x: Option<&Value>| {
            x.and_then(Value::as_array)
                .is_some_and(|a| a.iter().all(|e| e["name"].is_string()))
        };
        if v.is_null() {
            t.remove(key);
        } else if strategic && named(Some(v)) && named(t.get(key)) {
            let list = t.get_mut(key).unwrap().as_array_mut().unwrap();
            for e in v.as_array().unwrap() {
                let pos = list.iter().position(|x| x["name"] == e["name"]);
                match (pos, e["$patch"].as_str()) {
                    (Some(i), Some("delete")) => drop(list.remove(i)),
                    (Some(i), _) => merge(&mut list[i], e, true),
                    (None, Some("delete")) => {}
                    (None, _) => list.push(without_directives(e)),
                }
            }
        } else {
            merge(t.entry(key.clone()).or_insert(Value::Null), v, strategic);
        }
    }
}

fn without_directives(v: &Value) -> Value {
    let mut out = json!({});
    merge(&mut out, v, true);
    out
}

fn json_patch_op(doc: &mut Value, op: &Value) -> Result<(), String> {
    let path = op["path"].as_str().ok_or("a JSON patch op needs a path")?;
    let mut parts: Vec<String> = path
        .split('/')
        .skip(1)
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect();
    let last = parts
        .pop()
        .ok_or("a JSON patch op cannot target the root")?;
    let mut parent = doc;
    for p in &parts {
        parent = match parent {
            Value::Object(m) => m.get_mut(p),
            Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| format!("path {path} does not exist"))?;
    }
    let value = op.get("value").cloned();
    let missing = || format!("path {path} does not exist");
    match (op["op"].as_str(), parent) {
        (Some("add" | "replace"), Value::Object(m)) => {
            if op["op"] == "replace" && !m.contains_key(&last) {
                return Err(missing());
            }
            m.insert(last, value.ok_or("add/replace needs a value")?);
        }
        (Some("remove"), Value::Object(m)) => drop(m.remove(&last).ok_or_else(missing)?),
        (Some(o @ ("add" | "replace" | "remove")), Value::Array(a)) => {
            let i = if last == "-" {
                a.len()
            } else {
                last.parse().map_err(|_| missing())?
            };
            match o {
                "add" if i <= a.len() => a.insert(i, value.ok_or("add needs a value")?),
                "replace" if i < a.len() => a[i] = value.ok_or("replace needs a value")?,
                "remove" if i < a.len() => drop(a.remove(i)),
                _ => return Err(missing()),
            }
        }
        (o, _) => return Err(format!("unsupported JSON patch op {o:?} at {path}")),
    }
    Ok(())
}

fn resource_list(gv: &str) -> Value {
    let mut res = Vec::new();
    for k in KINDS.iter().filter(|k| k.gv == gv) {
        res.push(
            json!({"name": k.plural, "singularName": k.kind.to_lowercase(),
            "namespaced": k.namespaced, "kind": k.kind, "shortNames": k.short,
            "verbs": ["create", "delete", "get", "list", "patch", "update"]}),
        );
        if k.kind == "Deployment" {
            res.push(
                json!({"name": "deployments/scale", "singularName": "", "namespaced": true,
                "group": "autoscaling", "version": "v1", "kind": "Scale",
                "verbs": ["get", "patch", "update"]}),
            );
        }
    }
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": res})
}

fn prefix(gv: &str) -> String {
    match gv {
        "v1" => "api/v1".into(),
        _ => format!("apis/{gv}"),
    }
}

/// Per resource, a `patch` operation with its GVK and a `fieldValidation` parameter.
fn openapi_doc(gv: &str) -> Value {
    let mut paths = Map::new();
    let (group, version) = gv.split_once('/').unwrap_or(("", gv));
    for k in KINDS.iter().filter(|k| k.gv == gv) {
        let ns = ["", "namespaces/{namespace}/"][usize::from(k.namespaced)];
        let path = format!("/{}/{ns}{}/{{name}}", prefix(gv), k.plural);
        paths.insert(path, json!({"patch": {
            "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": k.kind},
            "x-kubernetes-action": "patch",
            "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
            "responses": {"200": {"description": "OK"}}}}));
    }
    json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.35.2"},
        "paths": paths, "components": {"schemas": {}}})
}

fn now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Days to civil date (Howard Hinnant's algorithm).
    let (days, rem) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, mi, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Standard base64 with padding (the library's, which masks Secret values in base64 too).
pub fn b64(data: &[u8]) -> String {
    hitl_gate::hex::base64_encode(data)
}

/// Just enough protobuf to read the Secrets helm stores its releases in.
mod proto {
    use serde_json::{json, Value};

    fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *b.get(*i)?;
            *i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return Some(v);
            }
        }
        None
    }

    /// The length-delimited fields (number, bytes) of one message; other wire types are skipped.
    fn fields(b: &[u8]) -> Option<Vec<(u64, &[u8])>> {
        let (mut i, mut out) = (0, Vec::new());
        while i < b.len() {
            let tag = varint(b, &mut i)?;
            match tag & 7 {
                0 => {
                    varint(b, &mut i)?;
                }
                1 => i += 8,
                5 => i += 4,
                2 => {
                    let n = usize::try_from(varint(b, &mut i)?).ok()?;
                    out.push((tag >> 3, b.get(i..i.checked_add(n)?)?));
                    i += n;
                }
                _ => return None,
            }
        }
        Some(out)
    }

    fn text(b: &[u8]) -> Value {
        json!(String::from_utf8_lossy(b))
    }

    /// A map entry (key = 1, value = 2).
    fn entry(b: &[u8]) -> Option<(String, &[u8])> {
        let f = fields(b)?;
        let get = |n| f.iter().find(|(m, _)| *m == n).map_or(&[][..], |(_, v)| *v);
        Some((String::from_utf8_lossy(get(1)).into_owned(), get(2)))
    }

    /// A `k8s\0`-enveloped `runtime.Unknown` holding a v1 Secret, as a JSON Secret.
    pub fn secret(body: &[u8]) -> Option<Value> {
        let unknown = fields(body.strip_prefix(b"k8s\0")?)?;
        let raw = unknown.iter().find(|(n, _)| *n == 2)?.1;
        let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {}, "data": {}});
        for (n, b) in fields(raw)? {
            match n {
                1 => s["metadata"] = meta(b)?,
                2 => {
                    let (k, v) = entry(b)?;
                    s["data"][k] = json!(super::b64(v));
                }
                3 => s["type"] = text(b),
                _ => {}
            }
        }
        Some(s)
    }

    /// A SelfSubjectAccessReview's resource attributes (verb, resource), from its protobuf
    /// form (what kubectl sends): spec = 2, resourceAttributes = 1, verb = 2, resource = 5.
    pub fn access_review(body: &[u8]) -> Option<(String, String)> {
        let unknown = fields(body.strip_prefix(b"k8s\0")?)?;
        let raw = unknown.iter().find(|(n, _)| *n == 2)?.1;
        let spec = fields(raw)?.into_iter().find(|(n, _)| *n == 2)?.1;
        let attrs = fields(spec)?.into_iter().find(|(n, _)| *n == 1)?.1;
        let mut out = (String::new(), String::new());
        for (n, b) in fields(attrs)? {
            match n {
                2 => out.0 = String::from_utf8_lossy(b).into_owned(),
                5 => out.1 = String::from_utf8_lossy(b).into_owned(),
                _ => {}
            }
        }
        Some(out)
    }

    fn meta(b: &[u8]) -> Option<Value> {
        let mut m = json!({});
        for (n, b) in fields(b)? {
            match n {
                1 => m["name"] = text(b),
                2 => m["generateName"] = text(b),
                3 => m["namespace"] = text(b),
                6 => m["resourceVersion"] = text(b),
                11 | 12 => {
                    let (k, v) = entry(b)?;
                    let which = if n == 11 { "labels" } else { "annotations" };
                    m[which][k] = text(v);
                }
                _ => {}
            }
        }
        Some(m)
    }
}

/// Writes a tiny helm chart into `dir`: Chart `tiny` 0.1.0, values `replicas: 1`, and one
/// Deployment `<release>-web` whose replicas come from the values and whose image is `image`.
pub fn write_chart(dir: &Path, image: &str) {
    std::fs::create_dir_all(dir.join("templates")).unwrap();
    std::fs::write(
        dir.join("Chart.yaml"),
        "apiVersion: v2\nname: tiny\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(dir.join("values.yaml"), "replicas: 1\n").unwrap();
    std::fs::write(
        dir.join("templates/deployment.yaml"),
        format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{{{ .Release.Name }}}}-web\nspec:\n  replicas: {{{{ .Values.replicas }}}}\n  selector:\n    matchLabels: {{app: web}}\n  template:\n    metadata:\n      labels: {{app: web}}\n    spec:\n      containers:\n      - name: web\n        image: {image}\n"
        ),
    )
    .unwrap();
}

/// Where `kubectl auth can-i` asks.
const SSAR: &str = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";

/// A SelfSubjectAccessReview answered as the token's role would be: the read role may get,
/// list and watch anything but Secrets; the dry-run role may do anything but read Secrets (an
/// admission policy, which can-i cannot see, limits its writes); the write role anything.
fn access_review(token: Option<&str>, body: &[u8]) -> Response {
    // kubectl sends it as protobuf; JSON is read too.
    let (verb, resource) = proto::access_review(body).unwrap_or_else(|| {
        let v: Value = serde_json::from_slice(body).unwrap_or(json!({}));
        let a = &v["spec"]["resourceAttributes"];
        let s = |k: &str| a[k].as_str().unwrap_or("").to_string();
        (s("verb"), s("resource"))
    });
    let allowed = match token {
        Some(READ_TOKEN) => {
            matches!(verb.as_str(), "get" | "list" | "watch") && resource != "secrets"
        }
        Some(DRY_RUN_TOKEN) => resource != "secrets",
        Some(WRITE_TOKEN) => true,
        _ => false,
    };
    let review = json!({"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
        "spec": {"resourceAttributes": {"verb": verb, "resource": resource}},
        "status": {"allowed": allowed}});
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        review.to_string(),
    )
        .into_response()
}
