//! The audit log's transparency endpoints (public, like the public key: they hold hashes and
//! signed tree heads, no row's content): the served checkpoint with its cosignatures,
//! inclusion proofs and consistency proofs. docs/api.md and docs/audit.md document them.

use std::sync::Arc;

use axum::extract::State as AxState;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::app::App;
use super::error::ApiError;
use super::extract::Q;
use crate::audit::note::VKey;
use crate::audit::tree::{self, Hash};

type St = AxState<Arc<App>>;

fn b64s(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(tree::b64).collect()
}

fn out_of_range(message: String) -> ApiError {
    ApiError::bad_request("invalid_query", message)
}

/// `GET /api/v1/audit/checkpoint`: the newest checkpoint every `[[serve.witness]]` cosigned
/// (else the newest), as a C2SP signed note with the cosignatures the server holds.
pub async fn checkpoint(AxState(app): St) -> Result<Response, ApiError> {
    let names: Vec<String> = app
        .live()
        .policy
        .serve()
        .witnesses
        .iter()
        .filter_map(|w| VKey::parse(&w.key).ok().map(|k| k.name))
        .collect();
    match app.store.served_checkpoint(&names).await? {
        Some(note) => {
            Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note).into_response())
        }
        None => Err(ApiError::not_found("signed checkpoint")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProofQuery {
    seq: i64,
    size: Option<i64>,
}

/// `GET /api/v1/audit/proof?seq=N&size=M`: the inclusion proof of row N in the tree of the
/// first M rows (default: all of them).
pub async fn proof(AxState(app): St, Q(q): Q<ProofQuery>) -> Result<Json<Value>, ApiError> {
    let rows = app.store.tree_size().await?;
    let size = q.size.unwrap_or(rows);
    if q.seq < 1 || q.seq > size || size > rows {
        return Err(out_of_range(format!(
            "seq {} is not in a tree of size {size}: 1 <= seq <= size <= {rows}, the rows in \
             the tree",
            q.seq
        )));
    }
    let hashes = app.store.inclusion(q.seq, size).await?;
    Ok(Json(
        json!({"seq": q.seq, "size": size, "proof": b64s(&hashes)}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    old: i64,
    new: i64,
}

/// `GET /api/v1/audit/consistency?old=A&new=B`: the consistency proof from the tree of the
/// first A rows to the tree of the first B rows.
pub async fn consistency(
    AxState(app): St,
    Q(q): Q<ConsistencyQuery>,
) -> Result<Json<Value>, ApiError> {
    let rows = app.store.tree_size().await?;
    if q.old < 1 || q.old > q.new || q.new > rows {
        return Err(out_of_range(format!(
            "no consistency proof from {} to {}: 1 <= old <= new <= {rows}, the rows in the tree",
            q.old, q.new
        )));
    }
    let hashes = app.store.consistency(q.old, q.new).await?;
    Ok(Json(
        json!({"old": q.old, "new": q.new, "proof": b64s(&hashes)}),
    ))
}
