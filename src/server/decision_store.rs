//! Recording approvals and decisions: each with its audit row in one operation of the writer,
//! by conditional updates, so a request is decided once, before its deadline (for a person),
//! and an approval counts only against the approvals it was made after. The notifications they
//! cause are queued in the same transaction (`outbox.rs`). Signing and choosing
//! who may decide is `decide.rs`'s job.

use serde_json::json;

use super::audit_log::{AuditLog, Entry};
use super::db::Result;
use super::outbox::{decision_extra, insert, Queued, Subject};
use super::store::Store;
use crate::api::{Approval, RequestView, SignedDecision, State};
use crate::policy::notify::Event;

impl Store {
    /// Records one approval of a request that needs more than it has (`needed`), with its
    /// `approval` audit row, if the request is still pending before its deadline and no other
    /// approval landed since `view` was read. Returns whether it was recorded.
    pub async fn record_approval(
        &self,
        view: &RequestView,
        approval: &Approval,
        details: Option<serde_json::Value>,
        needed: usize,
    ) -> Result<bool> {
        let mut all = view.approvals.clone();
        all.push(approval.clone());
        let mut body = json!({
            "command": {"tool": &view.tool, "argv": &view.argv},
            "environment": &view.environment,
            "diff_sha256": crate::hex::sha256(view.diff.text.as_bytes()),
            "approval": approval,
            "approvals": all.len(),
            "approvals_needed": needed,
        });
        if let Some(d) = details {
            body["approver"] = d;
        }
        let log = self.log.clone();
        let request = view.request();
        let queued = self.outbox().map_or_else(Vec::new, |o| {
            o.rows(
                Event::Approval,
                &Subject::of(view, &request),
                all.len(),
                json!({"approvals": &all}),
                approval.at,
            )
        });
        let (id, actor, now) = (view.id.clone(), approval.approver.clone(), approval.at);
        let had = i64::try_from(view.approvals.len()).unwrap_or(i64::MAX);
        let list = serde_json::to_string(&all).expect("approvals serialise");
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    let r = sqlx::query(
                        "UPDATE requests SET approvals = $1 WHERE id = $2 AND state = 'pending' \
                         AND deadline > $3 AND json_array_length(approvals) = $4",
                    )
                    .bind(&list)
                    .bind(&id)
                    .bind(now)
                    .bind(had)
                    .execute(&mut *c)
                    .await?;
                    let entry = Entry {
                        at: now,
                        kind: "approval",
                        request_id: Some(&id),
                        actor: &actor,
                        body: &body,
                    };
                    recorded(c, r.rows_affected(), &log, entry, &queued).await
                })
            })
            .await
            .inspect(|_| self.woke_outbox())
    }

    /// Records a terminal decision (signed by `decide.rs`) and its audit row (with `details`
    /// about the approver, if any), if the request is still pending and, for a human decision
    /// (`human`), its deadline has not passed. With `last`, the approval that completes the
    /// quorum, it is added to the request's approvals, and only if no other approval landed
    /// since `view` was read. Returns whether it was recorded.
    pub async fn record_decision(
        &self,
        view: &RequestView,
        decision: &SignedDecision,
        actor: &str,
        human: bool,
        details: Option<serde_json::Value>,
        last: Option<Approval>,
    ) -> Result<bool> {
        let mut body = json!({
            "command": {"tool": &view.tool, "argv": &view.argv},
            "environment": &view.environment,
            "diff_sha256": crate::hex::sha256(view.diff.text.as_bytes()),
            "decision": decision,
        });
        // The request's approvals, with the last one; unchanged (NULL) otherwise.
        let (had, approvals) = match last.clone() {
            Some(a) => {
                let mut all = view.approvals.clone();
                all.push(a);
                (
                    i64::try_from(view.approvals.len()).unwrap_or(i64::MAX),
                    Some(serde_json::to_string(&all).expect("approvals serialise")),
                )
            }
            None => (-1, None),
        };
        let approver = details.as_ref().map(|d| d.to_string());
        if let Some(d) = details {
            // Who decided, as far as the server could tell (a web decision's identity, its
            // sign-in time, session hash, source address and user agent).
            body["approver"] = d;
        }
        let log = self.log.clone();
        let request = view.request();
        let queued = self.outbox().map_or_else(Vec::new, |o| {
            let event = if decision.decision == State::Expired {
                Event::Expired
            } else {
                Event::Decided
            };
            let mut approvals = view.approvals.clone();
            approvals.extend(last.clone());
            let mut extra = decision_extra(decision);
            extra["approvals"] = json!(approvals);
            o.rows(
                event,
                &Subject::of(view, &request),
                0,
                extra,
                decision.decided_at,
            )
        });
        let (id, actor, now) = (view.id.clone(), actor.to_string(), decision.decided_at);
        let kind = decision.decision.as_str();
        let decision_json = serde_json::to_string(decision).expect("decision serialises");
        self.writer
            .write(move |c| {
                Box::pin(async move {
                    // The database enforces both rules: only a pending request is decided, and
                    // a human decision lands before the deadline (past it, only the reaper's
                    // expiry and the agent's cancel may end the request).
                    let r = sqlx::query(
                        "UPDATE requests SET state = $1, decision = $2, approver = $3, \
                         approvals = COALESCE($4, approvals) WHERE id = $5 \
                         AND state = 'pending' AND ($6 = 0 OR deadline > $7) \
                         AND ($8 < 0 OR json_array_length(approvals) = $9)",
                    )
                    .bind(kind)
                    .bind(&decision_json)
                    .bind(&approver)
                    .bind(&approvals)
                    .bind(&id)
                    .bind(i64::from(human))
                    .bind(now)
                    .bind(had)
                    .bind(had)
                    .execute(&mut *c)
                    .await?;
                    let entry = Entry {
                        at: now,
                        kind,
                        request_id: Some(&id),
                        actor: &actor,
                        body: &body,
                    };
                    recorded(c, r.rows_affected(), &log, entry, &queued).await
                })
            })
            .await
            .inspect(|_| self.woke_outbox())
    }
}

/// After a conditional update that changed `changed` rows: nothing more when it changed none
/// (`false`); else its audit row and its notifications, on the same transaction (`true`).
async fn recorded(
    c: &mut sqlx::AnyConnection,
    changed: u64,
    log: &AuditLog,
    entry: Entry<'_>,
    queued: &[Queued],
) -> Result<bool> {
    if changed == 0 {
        return Ok(false);
    }
    let at = entry.at;
    log.append(c, entry).await?;
    insert(c, queued, at).await?;
    Ok(true)
}
