//! The cosigner: takes each new signed checkpoint to the witnesses of `[[serve.witness]]` and
//! keeps their cosignatures (table `cosignatures`), which the server serves with the checkpoint
//! and `audit export` writes out.
//!
//! The server **pushes**, in c2sp.org/tlog-witness's `add-checkpoint` shape: the size the
//! witness last cosigned, a consistency proof from it, the new checkpoint. Pushing needs
//! nothing of a witness but an HTTPS endpoint: the witness never reaches into the approval
//! server's network, holds no credential for it, and any C2SP witness can serve. A witness that
//! is down is asked again every few seconds, and then only for the newest checkpoint, with a
//! proof from wherever it stopped.
//!
//! Its answers can reveal trouble, recorded as a `witness_alert` audit row (once per witness
//! and cause) and printed: the witness's state went back below a size it cosigned (it was
//! restored from an old copy); it has cosigned a larger tree than this log holds, or refuses
//! the proof (this log was truncated, rolled back or rewritten since it last saw it).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::app::App;
use crate::audit::note::{AddCheckpoint, SignedCheckpoint, VKey, ALG_COSIGNATURE_V1};
use crate::policy::schema;

/// A witness of `[[serve.witness]]`.
#[derive(Debug, Clone)]
pub struct Witness {
    pub key: VKey,
    pub url: String,
}

/// The witnesses of `[[serve.witness]]`, their keys parsed.
pub fn load(conf: &[schema::Witness]) -> Result<Vec<Witness>, String> {
    conf.iter()
        .map(|w| {
            let key = VKey::parse(&w.key).map_err(|e| format!("[[serve.witness]] key: {e}"))?;
            if key.alg != ALG_COSIGNATURE_V1 {
                return Err(format!(
                    "[[serve.witness]] key {}: not a cosigner key (signature type 0x04)",
                    w.key
                ));
            }
            if !(w.url.starts_with("https://") || w.url.starts_with("http://")) {
                return Err(format!(
                    "[[serve.witness]] url {:?}: not an http(s) URL",
                    w.url
                ));
            }
            Ok(Witness {
                key,
                url: w.url.trim_end_matches('/').to_string(),
            })
        })
        .collect()
}

/// How often a witness that did not cosign the newest checkpoint is asked again.
const RETRY: Duration = Duration::from_secs(2);

/// What the cosigner remembers between rounds.
#[derive(Default)]
struct Seen {
    /// The last alert recorded per witness, so one cause is recorded once.
    alerted: HashMap<String, String>,
    /// The checkpoint each witness refused, not offered to it again.
    refused: HashMap<String, i64>,
}

/// Runs until the server stops: after each signed checkpoint, and every few seconds, asks each
/// witness that lacks it to cosign the newest checkpoint.
pub async fn cosigner(app: Arc<App>, witnesses: Vec<Witness>) {
    let http = match reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(h) => h,
        Err(e) => return eprintln!("hitl-gate serve: the cosigner cannot start: {e}"),
    };
    let mut seen = Seen::default();
    loop {
        push_all(&app, &http, &witnesses, &mut seen).await;
        let signed = app.store.log.signed.clone();
        tokio::select! {
            () = signed.notified() => {
                // Signed inside a transaction: readable once it commits.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// One round: the newest checkpoint to each witness that has not cosigned it.
async fn push_all(app: &App, http: &reqwest::Client, witnesses: &[Witness], seen: &mut Seen) {
    for w in witnesses {
        if let Err(e) = push(app, http, w, seen).await {
            eprintln!("hitl-gate serve: witness {}: {e}", w.key.name);
        }
    }
}

/// A last round at shutdown, for the checkpoint signed then (at most `limit`).
pub async fn push_once(app: &App, witnesses: &[Witness], limit: Duration) {
    let Ok(http) = reqwest::Client::builder().no_proxy().timeout(limit).build() else {
        return;
    };
    let mut seen = Seen::default();
    let round = push_all(app, &http, witnesses, &mut seen);
    let _ = tokio::time::timeout(limit, round).await;
}

async fn alert(app: &App, seen: &mut Seen, w: &Witness, why: String) {
    eprintln!("hitl-gate serve: ALERT: witness {}: {why}", w.key.name);
    if seen.alerted.get(&w.key.name) == Some(&why) {
        return;
    }
    if let Err(e) = app
        .store
        .witness_alert(app.clock.now_ms(), &w.key.name, &why)
        .await
    {
        eprintln!("hitl-gate serve: the alert could not be recorded: {e}");
    }
    seen.alerted.insert(w.key.name.clone(), why);
}

async fn push(
    app: &App,
    http: &reqwest::Client,
    w: &Witness,
    seen: &mut Seen,
) -> Result<(), String> {
    let name = &w.key.name;
    let Some((size, note)) = app.store.latest_note().await.map_err(|e| e.to_string())? else {
        return Ok(());
    };
    let ours = app
        .store
        .cosigned_size(name)
        .await
        .map_err(|e| e.to_string())?;
    if ours > size {
        let why = format!(
            "it cosigned a checkpoint of size {ours}, but this log's newest checkpoint is of \
             size {size}: this log was truncated or rolled back"
        );
        alert(app, seen, w, why).await;
    }
    if ours >= size || seen.refused.get(name) == Some(&size) {
        return Ok(());
    }
    let mut old = ours;
    for _ in 0..2 {
        let proof = if old == 0 {
            Vec::new()
        } else {
            let p = app.store.consistency(old, size).await;
            p.map_err(|e| e.to_string())?
        };
        let body = AddCheckpoint {
            old: u64::try_from(old).unwrap_or(0),
            proof,
            checkpoint: note.clone(),
        };
        let resp = http
            .post(format!("{}/add-checkpoint", w.url))
            .body(body.to_text())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        match status {
            200 => return keep(app, w, size, &note, &text).await,
            409 => {
                let theirs: i64 = text
                    .trim()
                    .parse()
                    .map_err(|_| format!("409 without a size: {text:?}"))?;
                if theirs < ours {
                    let why = format!(
                        "it says the newest checkpoint it cosigned is of size {theirs}, but it \
                         cosigned size {ours}: its state was rolled back"
                    );
                    alert(app, seen, w, why).await;
                }
                if theirs > size {
                    let why = format!(
                        "it has cosigned a tree of size {theirs}, but this log's newest \
                         checkpoint is of size {size}: this log was truncated or rolled back"
                    );
                    alert(app, seen, w, why).await;
                    return Ok(());
                }
                old = theirs;
            }
            422 => {
                let why = format!(
                    "it refused the checkpoint of size {size} as inconsistent with the size \
                     {old} it cosigned: this log was rewritten or forked since"
                );
                alert(app, seen, w, why).await;
                seen.refused.insert(name.clone(), size);
                return Ok(());
            }
            s => return Err(format!("add-checkpoint answered {s}: {}", text.trim())),
        }
    }
    Ok(())
}

/// Checks the witness's cosignature lines on `note` and keeps the cosigned note.
async fn keep(app: &App, w: &Witness, size: i64, note: &str, lines: &str) -> Result<(), String> {
    let mut cp = SignedCheckpoint::parse(note)?;
    cp.add_lines(lines)?;
    let by = cp.signed_by(std::slice::from_ref(&w.key))?;
    if !by.contains(&w.key.name) {
        return Err("it answered 200 without a cosignature by its key".into());
    }
    app.store
        .add_cosignature(size, &w.key.name, cp.to_text(), app.clock.now_ms())
        .await
        .map_err(|e| e.to_string())
}
