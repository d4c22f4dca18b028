//! Picking a detached request up again. A gated command whose shim stopped waiting (its
//! `max_wait`, `HITL_GATE_WAIT`, or a harness's SIGTERM) leaves its request pending and a
//! record here; the same command run again finds it and attaches instead of asking anew.
//!
//! - **Where**: a per-user state directory, `$XDG_STATE_HOME/hitl-gate/pending` (else
//!   `~/.local/state/hitl-gate/pending`), 0700, one file per command (0600), named by the
//!   SHA-256 of the tool, argv and working directory. In lockdown mode the runner's child keeps
//!   them, under the runner's home and per agent, where the agent cannot write.
//! - **What**: the request id and the request as submitted (its nonce, run template and hashes),
//!   the binding hash, and for terraform the plan file the approver saw.
//! - **The binding**: the SHA-256 of the tool, argv, working directory, target and run template,
//!   with the sealed inputs' hashes (kubectl, helm) or the change model (terraform, whose plan
//!   file differs on every plan). The same binding, and a request the server holds as recorded:
//!   attach (pending) or run (approved, not run yet). Anything else: the old request is
//!   superseded (when still pending) and a new one is made.
//! - **Exactly one run**: the server's rule. Before any run of an approval the shim claims it
//!   (`POST /requests/{id}/claim`, [`claim`]); the first claim holds, every other shim is
//!   refused, and a claimed or finished request is never picked up again. A record edited by
//!   hand cannot get a run past the signed decision, which covers the request's hash, its nonce
//!   and every artifact hash, nor past the claim: at most it makes a new request.

use std::io::Write;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::prepared::{Prepared, Stop};
use super::say::say;
use crate::api::{CreateRequest, RequestView, State};
use crate::client::{Client, ClientError};
use crate::exit as code;

/// One command's place among the records, and what must match to attach.
pub struct Key {
    file: Option<PathBuf>,
    pub binding: String,
}

#[derive(Serialize, Deserialize)]
struct Record {
    version: u32,
    id: String,
    binding: String,
    request: CreateRequest,
    /// terraform: the plan file the approver saw (base64).
    #[serde(default)]
    plan: Option<String>,
}

/// What this run of a command does about its detached request.
pub enum Found {
    /// Picks it up (adopted into the prepared command): pending, or approved and not run.
    Resume(Box<RequestView>),
    /// Makes a new request; `replaces` is the pending one it supersedes once it exists.
    New { replaces: Option<String> },
}

impl Key {
    pub fn of(req: &CreateRequest) -> Key {
        let command = serde_json::json!({"tool": req.tool, "argv": req.argv, "cwd": req.cwd});
        let file = dir().map(|d| d.join(crate::hex::sha256(command.to_string().as_bytes())));
        Key {
            file,
            binding: binding(req),
        }
    }
}

/// The binding of a request: what must be the same for a run to be the detached one.
fn binding(r: &CreateRequest) -> String {
    let terraform = matches!(r.tool.as_str(), "terraform" | "tofu");
    let what = if terraform {
        serde_json::json!({"model": r.diff.summary.get("resources"), "complete": r.diff.summary.get("complete")})
    } else {
        serde_json::json!(r.artifact_sha256)
    };
    let b = serde_json::json!({"tool": r.tool, "argv": r.argv, "cwd": r.cwd,
        "environment": r.environment, "run": r.run.as_ref().map(|t| &t.argv), "what": what});
    crate::hex::sha256(b.to_string().as_bytes())
}

/// The records' directory, made 0700 when missing; `None` when there is no home for it.
fn dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    let mut d = base.join("hitl-gate/pending");
    if let Ok(agent) = std::env::var(super::lockdown::AGENT_VAR) {
        d = d.join(crate::hex::sha256(agent.as_bytes()));
    }
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&d)
        .ok()?;
    Some(d)
}

fn load(key: &Key) -> Option<Record> {
    let text = std::fs::read_to_string(key.file.as_ref()?).ok()?;
    serde_json::from_str(&text).ok()
}

/// Records request `id` for `p` (the request as submitted, the terraform plan).
pub fn save(key: &Key, id: &str, p: &Prepared) {
    let Some(path) = &key.file else { return };
    let plan = matches!(p.request.tool.as_str(), "terraform" | "tofu")
        .then(|| {
            p.snapshots
                .first()
                .and_then(|s| std::fs::read(s.path()).ok())
        })
        .flatten()
        .map(|b| crate::hex::base64_encode(&b));
    let rec = Record {
        version: 1,
        id: id.into(),
        binding: key.binding.clone(),
        request: p.request.clone(),
        plan,
    };
    if let Err(e) = write(path, &rec) {
        say(&format!(
            "warning: cannot keep a record to resume request {id} ({e})"
        ));
    }
}

fn write(path: &PathBuf, rec: &Record) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(&serde_json::to_vec(rec).map_err(std::io::Error::other)?)?;
    f.sync_all()?;
    std::fs::rename(tmp, path)
}

/// Forgets the record of request `id` (it ended, or ran); a record of another request (a
/// later run of the same command) is kept.
pub fn forget(key: &Key, id: &str) {
    if let (Some(p), Some(rec)) = (&key.file, load(key)) {
        if rec.id == id {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// The detached request this command may pick up, adopted into `p` (pending, or approved and
/// its run not claimed), or a new request to make (superseding a pending old one of another
/// binding).
pub fn attach(client: &Client, key: &Key, p: &mut Prepared) -> Result<Found, Stop> {
    let Some(rec) = load(key) else {
        return Ok(Found::New { replaces: None });
    };
    let Ok(view) = client.wait(&rec.id, 0, 0) else {
        forget(key, &rec.id);
        return Ok(Found::New { replaces: None });
    };
    // The server's request is the one recorded, made by this same command.
    let ours = view.request().sha256() == rec.request.sha256()
        && (&rec.request.tool, &rec.request.argv, &rec.request.cwd)
            == (&p.request.tool, &p.request.argv, &p.request.cwd);
    let same = ours && rec.binding == key.binding && binding(&rec.request) == key.binding;
    let lapsed = view
        .decision
        .as_ref()
        .is_some_and(|d| d.valid_until <= crate::api::now_ms());
    if view.state == State::Approved && lapsed && !view.run_claimed {
        say(&format!(
            "request {} was approved, but the approval lapsed ([serve] decision_valid_for) \
             before the command was run again; asking again",
            view.id
        ));
    }
    let usable = match view.state {
        State::Pending => true,
        State::Approved => !view.run_claimed && view.outcome.is_none() && !lapsed,
        _ => false,
    };
    if !same || !usable {
        forget(key, &rec.id);
        let replaces = (ours && view.state == State::Pending).then(|| rec.id.clone());
        return Ok(Found::New { replaces });
    }
    adopt(p, rec)?;
    say(&format!("resuming request {}", view.id));
    Ok(Found::Resume(Box::new(view)))
}

/// Supersedes the detached request `old` now that `new` replaces it (best effort: one that
/// cannot be marked stays pending, and expires at its deadline).
pub fn supersede(client: &Client, old: &str, new: &str) {
    let why = format!(
        "the same command was run again with other inputs, target or planned changes; request \
         {new} replaces it"
    );
    match client.supersede(old, &why) {
        Ok(_) => say(&format!("request {old} superseded: {why}")),
        Err(e) => say(&format!(
            "warning: request {old} could not be superseded ({e})"
        )),
    }
}

/// Makes `p` the detached request's run: its request (nonce, hashes), and for terraform the
/// plan the approver saw in place of the one just made.
fn adopt(p: &mut Prepared, rec: Record) -> Result<(), Stop> {
    p.request = rec.request;
    let Some(plan) = rec.plan else { return Ok(()) };
    let bytes = crate::hex::base64_decode(&plan)
        .ok_or_else(|| Stop::internal("the resume record's plan is not base64"))?;
    let old = super::sealed::Sealed::new("plan", &bytes).map_err(Stop::internal)?;
    let new = p.snapshots.first().map(|s| s.path());
    for a in &mut p.args {
        if new.as_deref().is_some_and(|n| a.to_str() == Some(n)) {
            *a = old.path().into();
        }
    }
    let hash = old.sha256().to_string();
    p.artifacts_now = Box::new(move || Ok(vec![hash.clone()]));
    p.snapshots = vec![old];
    Ok(())
}

/// Claims approved request `id`'s one run on the server before anything runs: refused when
/// another shim holds it (two runs of the same command picked the approval up at once) or the
/// approval already ran.
pub fn claim(client: &Client, id: &str) -> Result<(), Stop> {
    let mine = super::prepared::nonce()[..32].to_string();
    match super::wait::retry_briefly(|| client.claim(id, &mine)) {
        Ok(_) => Ok(()),
        Err(ClientError::Fatal(e)) => Err(Stop::new(
            code::REFUSED,
            format!("request {id} was approved, but this run may not run it: {e}; it did not run"),
        )),
        Err(e) => Err(Stop::new(
            code::APPROVAL_UNAVAILABLE,
            format!("request {id} was approved, but claiming its run failed ({e}); it did not run"),
        )),
    }
}
