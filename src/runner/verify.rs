//! What the writer checks before it runs anything, trusting nothing the runner's child says:
//! 1. the signed decision, with the pinned server key: signature first, then that it approves
//!    this request id, with this nonce, for this request (its SHA-256: argv, target, diff, run
//!    template and artifact hashes), still within its validity window;
//! 2. every sealed input it was handed: sealed against writing, and its SHA-256 the one the
//!    run template (signed with the request) names at that place, which the approval covers;
//! 3. the run template against the approved argv and target (`bind.rs`);
//! 4. that this approval has not run before (`Ledger`): one approval, one run.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Mutex;

use super::wire::Job;
use crate::api::CreateRequest;
use crate::shim::sealed::Sealed;
use crate::signing;
use crate::tool::Tool;

/// A job that passed every check.
pub struct Verified {
    pub tool: Tool,
    pub id: String,
    pub request: CreateRequest,
    /// The template's argv, placeholders still in it.
    pub template: Vec<String>,
    pub inputs: Vec<Sealed>,
}

/// Checks `job` and the sealed `inputs` that came with it, at `now` (unix ms).
pub fn verify(
    public_key: &str,
    job: Job,
    inputs: Vec<OwnedFd>,
    now: i64,
) -> Result<Verified, String> {
    let tool = Tool::from_name(&job.tool)
        .filter(|t| t.name() == job.request.tool)
        .ok_or_else(|| format!("the tool {:?} is not the request's", job.tool))?;
    let r = &job.request;
    let want = signing::Expected {
        request_id: &job.request_id,
        argv_sha256: signing::argv_sha256(tool.name(), &r.argv),
        environment_sha256: signing::environment_sha256(&r.environment),
        artifact_sha256: r.artifact_sha256.clone(),
        request_sha256: r.sha256(),
        nonce: &r.nonce,
    };
    signing::check_approval(public_key, &job.decision, &want, now)?;
    let template = r
        .run
        .clone()
        .ok_or("the approved request has no run template")?;
    if inputs.len() != template.inputs.len() {
        return Err(format!(
            "{} sealed inputs came with the run, its template names {}",
            inputs.len(),
            template.inputs.len()
        ));
    }
    let inputs: Vec<Sealed> = inputs
        .into_iter()
        .map(Sealed::received)
        .collect::<Result<_, _>>()?;
    for (i, (got, want)) in inputs.iter().zip(&template.inputs).enumerate() {
        if got.sha256() != want {
            return Err(format!(
                "sealed input {i} is not the approved one (sha256 {}, approved {want})",
                got.sha256()
            ));
        }
        if !r.artifact_sha256.contains(want) {
            return Err(format!("sealed input {i} is not covered by the approval"));
        }
    }
    super::bind::check(tool, &r.argv, &template.argv, &r.environment)?;
    Ok(Verified {
        tool,
        id: job.request_id,
        request: job.request,
        template: template.argv,
        inputs,
    })
}

/// The writer's durable record of what ran and what it refused, in its own state directory.
pub struct Ledger {
    dir: PathBuf,
    lock: Mutex<()>,
}

impl Ledger {
    pub fn open(dir: PathBuf) -> Result<Ledger, String> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        Ok(Ledger {
            dir,
            lock: Mutex::new(()),
        })
    }

    /// Claims request `id`'s approval for one run: refused when it ran (or was claimed) before.
    /// Written and synced before the run starts, so a crash cannot run it twice.
    pub fn claim(&self, id: &str) -> Result<(), String> {
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.dir.join("ran");
        let ran = std::fs::read_to_string(&path).unwrap_or_default();
        if ran.lines().any(|l| l == id) {
            return Err(format!(
                "the approval of request {id} has already been used: one approval, one run"
            ));
        }
        append(&path, &format!("{id}\n"))
    }

    /// Records a refusal (a JSON line in `refusals.log`), and says so on stderr.
    pub fn refused(&self, id: &str, why: &str, now: i64) {
        let _held = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let line = serde_json::json!({"at": now, "request_id": id, "refused": why});
        eprintln!("hitl-gate writer: refused request {id:?}: {why}");
        if let Err(e) = append(&self.dir.join("refusals.log"), &format!("{line}\n")) {
            eprintln!("hitl-gate writer: cannot record the refusal: {e}");
        }
    }
}

/// Appends `text` to `path` (0600) and syncs it.
fn append(path: &std::path::Path, text: &str) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("{}: {e}", path.display()))
}
