//! `hitl-gate witness`: a transparency-log witness (c2sp.org/tlog-witness) for the approval
//! server's audit log, or any C2SP log, with its own Ed25519 key and its own durable state in
//! its own data dir (`state.rs`), meant to run on another host, under another operator.
//!
//! `POST /add-checkpoint` takes the log's newest checkpoint and a consistency proof from the
//! last one this witness cosigned. It cosigns (c2sp.org/tlog-cosignature, Ed25519
//! `cosignature/v1`) only a checkpoint signed by a log it was configured with (`--log VKEY`)
//! that extends, append-only, what it cosigned before, and persists it before answering.
//! Anything else gets the spec's status: 400 bad request, 403 not signed by the log's key, 404
//! unknown origin, 409 `old` is not the size it last cosigned (the body says which), 422 the
//! proof does not verify. A truncation (a smaller tree), a fork (another root at a size it
//! cosigned), an inconsistent extension and a claim that it cosigned more than it remembers
//! are recorded in its journal, whatever the answer. `GET /<sha256(origin) hex>/checkpoint`
//! serves the newest cosigned checkpoint of a log (for monitors and auditors); `GET /` its key.
//!
//! One lock covers checking against the state and persisting the new state, so two requests
//! cannot roll each other back (the race the spec describes).

pub mod state;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State as AxState};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::Mutex;

use crate::audit::note::{AddCheckpoint, SignedCheckpoint, VKey, ALG_COSIGNATURE_V1, ALG_ED25519};
use crate::audit::tree::{self, EMPTY_HASH};
use crate::signing::Keys;
use state::{Latest, State};

/// A running witness.
pub struct Witness {
    keys: Keys,
    /// Its cosigner key (name, key ID, type 0x04).
    pub vkey: VKey,
    /// The logs it witnesses, by origin.
    logs: HashMap<String, VKey>,
    state: Mutex<State>,
}

/// An answer to `add-checkpoint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 200: the cosignature line(s).
    Cosigned(String),
    /// 409: the size of the newest checkpoint it cosigned for that log.
    Conflict(u64),
    /// Any other status, with a one-line reason.
    Refused(u16, String),
}

fn secs_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Witness {
    /// Opens the witness in `dir` (0700, created on first use, with its key and state); `logs`
    /// are the verifier keys of the logs it witnesses (key name = origin).
    pub async fn open(dir: &Path, name: Option<&str>, logs: &[String]) -> Result<Witness, String> {
        crate::server::prepare_data_dir(dir)?;
        let keys = Keys::load_or_create(dir)?;
        let (state, name) = State::open(dir, name).await?;
        let vkey = VKey::of(&keys, &name, ALG_COSIGNATURE_V1)?;
        let mut by_origin = HashMap::new();
        for l in logs {
            let k = VKey::parse(l).map_err(|e| format!("--log: {e}"))?;
            if k.alg != ALG_ED25519 {
                return Err(format!("--log {l}: not a log's key (signature type 0x01)"));
            }
            by_origin.insert(k.name.clone(), k);
        }
        Ok(Witness {
            keys,
            vkey,
            logs: by_origin,
            state: Mutex::new(state),
        })
    }

    /// Handles one `add-checkpoint` body.
    pub async fn add(&self, body: &str) -> Answer {
        let bad = |s: u16, m: String| Answer::Refused(s, m);
        let req = match AddCheckpoint::parse(body) {
            Ok(r) => r,
            Err(e) => return bad(400, e),
        };
        let cp = match SignedCheckpoint::parse(&req.checkpoint) {
            Ok(c) => c,
            Err(e) => return bad(400, e),
        };
        let Some(log) = self.logs.get(&cp.origin) else {
            return bad(404, format!("unknown log origin {:?}", cp.origin));
        };
        match cp.signed_by(std::slice::from_ref(log)) {
            Ok(by) if by.contains(&log.name) => {}
            Ok(_) => return bad(403, "not signed by the log's key".into()),
            Err(e) => return bad(403, e),
        }
        let mut state = self.state.lock().await;
        match self.decide(&mut state, &req, &cp).await {
            Ok(a) => a,
            Err(e) => bad(500, e),
        }
    }

    /// The checks against the state, and the cosignature; under the state's lock.
    async fn decide(
        &self,
        state: &mut State,
        req: &AddCheckpoint,
        cp: &SignedCheckpoint,
    ) -> Result<Answer, String> {
        let at = i64::try_from(secs_now()).unwrap_or(0) * 1000;
        let latest = state.latest(&cp.origin).await?;
        let (size, root) = latest
            .as_ref()
            .map_or((0, tree::b64(&EMPTY_HASH)), |l| (l.size, l.root.clone()));
        let new_root = tree::b64(&cp.root);
        let refuse = |why: String| (why, cp.size, new_root.clone());
        let evidence = if cp.size < size {
            Some(refuse(format!("truncation: a checkpoint of size {} is below the size {size} this witness cosigned", cp.size)))
        } else if cp.size == size && new_root != root && size > 0 {
            Some(refuse(format!("fork: a checkpoint of size {size} with another root ({new_root}, cosigned: {root})")))
        } else if req.old > size {
            Some(refuse(format!("the log says this witness cosigned size {}, but it holds size {size}: its state may have been rolled back", req.old)))
        } else {
            None
        };
        if let Some((why, s, r)) = &evidence {
            state.refused(&cp.origin, *s, r, why, at).await?;
            eprintln!("hitl-gate witness: refused {}: {why}", cp.origin);
        }
        if req.old > cp.size {
            return Ok(Answer::Refused(
                400,
                "old is larger than the checkpoint's size".into(),
            ));
        }
        if req.old != size {
            return Ok(Answer::Conflict(size));
        }
        if let Some((why, ..)) = evidence {
            return Ok(Answer::Refused(422, why));
        }
        if (cp.size == 0 && cp.root != EMPTY_HASH) || (req.old == 0 && !req.proof.is_empty()) {
            return Ok(Answer::Refused(
                422,
                "a proof from the empty tree must be empty".into(),
            ));
        }
        if size > 0 {
            let old_root = tree::parse_b64(&root)?;
            if let Err(e) = tree::check_consistency(&req.proof, size, old_root, cp.size, cp.root) {
                let why = format!("inconsistent: not an extension of the checkpoint of size {size} it cosigned ({e}): a fork or a rewrite");
                state
                    .refused(&cp.origin, cp.size, &new_root, &why, at)
                    .await?;
                eprintln!("hitl-gate witness: refused {}: {why}", cp.origin);
                return Ok(Answer::Refused(422, why));
            }
        }
        let line = cp.cosign(&self.keys, &self.vkey.name, secs_now())?;
        let mut cosigned = SignedCheckpoint::parse(&cp.to_text())?;
        cosigned.add_lines(&line)?;
        let l = Latest {
            size: cp.size,
            root: new_root,
            note: cosigned.to_text(),
        };
        state.cosigned(&cp.origin, &l, at).await?;
        Ok(Answer::Cosigned(line))
    }

    /// The newest cosigned checkpoint of the log whose origin hashes to `origin_hash`.
    pub async fn checkpoint(&self, origin_hash: &str) -> Result<Option<String>, String> {
        self.state.lock().await.latest_by_hash(origin_hash).await
    }

    /// The journal: every checkpoint cosigned and every refusal recorded.
    pub async fn journal(&self) -> Result<Vec<state::Event>, String> {
        self.state.lock().await.journal().await
    }
}

async fn add_checkpoint(AxState(w): AxState<Arc<Witness>>, body: String) -> Response {
    match w.add(&body).await {
        Answer::Cosigned(lines) => (StatusCode::OK, lines).into_response(),
        Answer::Conflict(size) => (
            StatusCode::CONFLICT,
            [(header::CONTENT_TYPE, "text/x.tlog.size")],
            format!("{size}\n"),
        )
            .into_response(),
        Answer::Refused(s, why) => {
            let s = StatusCode::from_u16(s).unwrap_or(StatusCode::BAD_REQUEST);
            (s, format!("{why}\n")).into_response()
        }
    }
}

async fn checkpoint(AxState(w): AxState<Arc<Witness>>, UrlPath(hash): UrlPath<String>) -> Response {
    match w.checkpoint(&hash).await {
        Ok(Some(note)) => note.into_response(),
        Ok(None) => (
            StatusCode::NOT_FOUND,
            "no checkpoint cosigned for that log\n",
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn key(AxState(w): AxState<Arc<Witness>>) -> String {
    format!("hitl-gate witness\n{}\n", w.vkey)
}

/// The witness's HTTP routes.
pub fn router(w: Arc<Witness>) -> Router {
    Router::new()
        .route("/", get(key))
        .route("/add-checkpoint", post(add_checkpoint))
        .route("/{origin_hash}/checkpoint", get(checkpoint))
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(w)
}

/// Serves `w` on `listener` until `shutdown` completes.
pub async fn serve<F>(
    w: Arc<Witness>,
    listener: tokio::net::TcpListener,
    shutdown: F,
) -> Result<(), String>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    axum::serve(listener, router(w))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| format!("witness: {e}"))
}
