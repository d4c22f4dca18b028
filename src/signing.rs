//! The server's Ed25519 key and the canonical bytes it signs: decisions (which the shim verifies
//! before it runs anything) and audit checkpoints.
//!
//! Canonical encoding (documented in docs/api.md): a sequence of fields, each a 4-byte
//! big-endian length followed by that many bytes; a list is a 4-byte big-endian count followed by
//! its elements encoded as fields. Numbers are decimal ASCII. The first field is a domain tag, so
//! a decision signature can never be replayed as a checkpoint signature or the other way round.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};

use crate::api::{SignedDecision, Target};
use crate::hex;

pub const DECISION_TAG: &str = "hitl-gate/decision/v2";
pub const CHECKPOINT_TAG: &str = "hitl-gate/checkpoint/v1";
/// The key file inside the data dir.
pub const KEY_FILE: &str = "signing.key";

/// Builds canonical bytes.
#[derive(Default)]
pub struct Canonical(Vec<u8>);

impl Canonical {
    pub fn field(mut self, bytes: &[u8]) -> Self {
        let len = u32::try_from(bytes.len()).expect("field under 4 GiB");
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(bytes);
        self
    }

    pub fn list<S: AsRef<[u8]>>(mut self, items: &[S]) -> Self {
        let n = u32::try_from(items.len()).expect("list under 4G items");
        self.0.extend_from_slice(&n.to_be_bytes());
        items.iter().fold(self, |c, i| c.field(i.as_ref()))
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// SHA-256 of the command: the tool name followed by each argument, as a canonical list.
pub fn argv_sha256(tool: &str, argv: &[String]) -> String {
    let mut all = Vec::with_capacity(argv.len() + 1);
    all.push(tool);
    all.extend(argv.iter().map(String::as_str));
    hex::sha256(&Canonical::default().list(&all).into_bytes())
}

/// SHA-256 of the environment target's canonical JSON (sorted keys, absent fields omitted).
pub fn environment_sha256(target: &Target) -> String {
    let v = serde_json::to_value(target).expect("target serialises");
    hex::sha256(v.to_string().as_bytes())
}

/// The bytes a decision signature covers.
pub fn decision_bytes(d: &SignedDecision) -> Vec<u8> {
    Canonical::default()
        .field(DECISION_TAG.as_bytes())
        .field(d.request_id.as_bytes())
        .field(d.argv_sha256.as_bytes())
        .list(&d.artifact_sha256)
        .field(d.environment_sha256.as_bytes())
        .field(d.request_sha256.as_bytes())
        .field(d.nonce.as_bytes())
        .field(d.decision.as_str().as_bytes())
        .list(&d.approvers)
        .field(d.decided_at.to_string().as_bytes())
        .field(d.valid_until.to_string().as_bytes())
        .into_bytes()
}

/// The bytes a checkpoint signature covers.
pub fn checkpoint_bytes(seq: i64, head_hash: &str) -> Vec<u8> {
    Canonical::default()
        .field(CHECKPOINT_TAG.as_bytes())
        .field(seq.to_string().as_bytes())
        .field(head_hash.as_bytes())
        .into_bytes()
}

/// The server's signing key.
pub struct Keys {
    pair: Ed25519KeyPair,
}

impl Keys {
    /// Loads `DIR/signing.key`, creating it (mode 0600) on first start. A key file that group or
    /// others can read is refused.
    pub fn load_or_create(dir: &Path) -> Result<Keys, String> {
        let path = dir.join(KEY_FILE);
        let pkcs8 = match std::fs::read(&path) {
            Ok(bytes) => {
                let mode = std::fs::metadata(&path)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                    .permissions()
                    .mode();
                if mode & 0o077 != 0 {
                    return Err(format!(
                        "{}: the signing key is readable by others (mode {:o}); chmod 600 it",
                        path.display(),
                        mode & 0o777
                    ));
                }
                bytes
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let rng = ring::rand::SystemRandom::new();
                let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| "cannot generate an Ed25519 key".to_string())?;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
                f.write_all(doc.as_ref())
                    .and_then(|()| f.sync_all())
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
            .map_err(|e| format!("{}: not an Ed25519 PKCS#8 key: {e}", path.display()))?;
        Ok(Keys { pair })
    }

    /// The public key, lowercase hex (32 bytes).
    pub fn public_hex(&self) -> String {
        hex::encode(self.pair.public_key().as_ref())
    }

    /// Signs `bytes`; the signature as lowercase hex.
    pub fn sign(&self, bytes: &[u8]) -> String {
        hex::encode(self.pair.sign(bytes).as_ref())
    }
}

/// Verifies a hex signature over `bytes` with a hex public key.
pub fn verify(public_hex: &str, bytes: &[u8], signature_hex: &str) -> Result<(), String> {
    let key = hex::decode(public_hex).ok_or("the public key is not hex")?;
    let sig = hex::decode(signature_hex).ok_or("the signature is not hex")?;
    UnparsedPublicKey::new(&ED25519, key)
        .verify(bytes, &sig)
        .map_err(|_| "bad signature".to_string())
}

/// Verifies a signed decision with the pinned public key.
pub fn verify_decision(public_hex: &str, d: &SignedDecision) -> Result<(), String> {
    verify(public_hex, &decision_bytes(d), &d.signature)
}

/// What the shim expects an approval to say, computed by the shim itself right before the run.
pub struct Expected<'a> {
    pub request_id: &'a str,
    pub argv_sha256: String,
    pub environment_sha256: String,
    pub artifact_sha256: Vec<String>,
    /// SHA-256 of the request the shim sent.
    pub request_sha256: String,
    /// The nonce the shim made for this command.
    pub nonce: &'a str,
}

/// Checks an approval before anything runs: the signature with the pinned key first (so nothing
/// unsigned is looked at further), then that it approves this very request of this very command
/// (id and nonce) as the shim sent it (request hash), is still valid at `now_ms`, and names the
/// argv, environment and artifacts the shim is about to run.
pub fn check_approval(
    public_hex: &str,
    d: &SignedDecision,
    want: &Expected<'_>,
    now_ms: i64,
) -> Result<(), String> {
    verify_decision(public_hex, d).map_err(|e| {
        format!("the decision's signature does not verify with the pinned public key ({e})")
    })?;
    if d.decision != crate::api::State::Approved {
        return Err(format!(
            "the decision is {}, not approved",
            d.decision.as_str()
        ));
    }
    if d.request_id != want.request_id {
        return Err(format!(
            "the decision is for request {}, not {}",
            d.request_id, want.request_id
        ));
    }
    if d.nonce != want.nonce {
        return Err(
            "the approval is for another command (its nonce is not this command's): a replayed \
             approval"
                .into(),
        );
    }
    if d.request_sha256 != want.request_sha256 {
        return Err(
            "the approved request is not the one this shim sent (its body, the diff included, \
             was changed on the way)"
                .into(),
        );
    }
    if now_ms >= d.valid_until {
        return Err(format!(
            "the approval expired {} ms ago (valid until {}, unix ms); ask again",
            now_ms - d.valid_until,
            d.valid_until
        ));
    }
    if d.argv_sha256 != want.argv_sha256 {
        return Err("the approved command line is not this one".into());
    }
    if d.environment_sha256 != want.environment_sha256 {
        return Err("the approved target is not the one the command now points at".into());
    }
    if d.artifact_sha256 != want.artifact_sha256 {
        return Err(format!(
            "what is about to run (sha256 {}) is not what was approved (sha256 {}); it changed \
             since it was shown",
            want.artifact_sha256.join(","),
            d.artifact_sha256.join(",")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::State;

    #[test]
    fn an_approval_must_match_everything_the_shim_is_about_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(dir.path()).unwrap();
        let argv = vec!["apply".to_string()];
        let mut d = SignedDecision {
            request_id: "r1".into(),
            decision: State::Approved,
            approvers: vec!["local:alice".into()],
            comment: None,
            argv_sha256: argv_sha256("terraform", &argv),
            artifact_sha256: vec![hex::sha256(b"plan")],
            environment_sha256: environment_sha256(&Target::default()),
            request_sha256: hex::sha256(b"request"),
            nonce: "n1".into(),
            decided_at: 1000,
            valid_until: 2000,
            signature: String::new(),
        };
        d.signature = keys.sign(&decision_bytes(&d));
        let want = || Expected {
            request_id: "r1",
            argv_sha256: argv_sha256("terraform", &argv),
            environment_sha256: environment_sha256(&Target::default()),
            artifact_sha256: vec![hex::sha256(b"plan")],
            request_sha256: hex::sha256(b"request"),
            nonce: "n1",
        };
        let pk = keys.public_hex();
        check_approval(&pk, &d, &want(), 1500).unwrap();
        let err =
            |d: &SignedDecision, w: Expected<'_>, now| check_approval(&pk, d, &w, now).unwrap_err();
        assert!(err(&d, want(), 2000).contains("expired"));
        let mut w = want();
        w.artifact_sha256 = vec![hex::sha256(b"other plan")];
        assert!(err(&d, w, 1500).contains("changed since it was shown"));
        let mut w = want();
        w.environment_sha256 = "x".into();
        assert!(err(&d, w, 1500).contains("approved target"));
        // A replayed approval of an identical command: another nonce.
        let mut w = want();
        w.nonce = "n2";
        assert!(err(&d, w, 1500).contains("replayed"));
        // The body was changed on the way (a proxy rewrote the diff).
        let mut w = want();
        w.request_sha256 = hex::sha256(b"other request");
        assert!(err(&d, w, 1500).contains("changed on the way"));
        let mut w = want();
        w.argv_sha256 = argv_sha256("terraform", &["destroy".into()]);
        assert!(err(&d, w, 1500).contains("command line"));
        let mut w = want();
        w.request_id = "r2";
        assert!(err(&d, w, 1500).contains("request r1"));
        // Signed by another key: refused before anything else is looked at.
        let other = tempfile::tempdir().unwrap();
        let other = Keys::load_or_create(other.path()).unwrap();
        assert!(check_approval(&other.public_hex(), &d, &want(), 1500)
            .unwrap_err()
            .contains("signature"));
        // A validly signed rejection is not an approval.
        let mut r = d.clone();
        r.decision = State::Rejected;
        r.signature = keys.sign(&decision_bytes(&r));
        assert!(err(&r, want(), 1500).contains("not approved"));
    }

    #[test]
    fn decisions_sign_and_verify_and_any_change_breaks_them() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::load_or_create(dir.path()).unwrap();
        let again = Keys::load_or_create(dir.path()).unwrap();
        assert_eq!(keys.public_hex(), again.public_hex(), "the key persists");
        let mut d = SignedDecision {
            request_id: "r1".into(),
            decision: State::Approved,
            approvers: vec!["local:alice".into()],
            comment: None,
            argv_sha256: argv_sha256("kubectl", &["delete".into(), "pod".into()]),
            artifact_sha256: vec![hex::sha256(b"plan")],
            environment_sha256: environment_sha256(&Target::default()),
            request_sha256: hex::sha256(b"request"),
            nonce: "n".into(),
            decided_at: 1,
            valid_until: 2,
            signature: String::new(),
        };
        d.signature = keys.sign(&decision_bytes(&d));
        verify_decision(&keys.public_hex(), &d).unwrap();
        let mut bad = d.clone();
        bad.valid_until = 3;
        assert!(verify_decision(&keys.public_hex(), &bad).is_err());
        let mut bad = d.clone();
        bad.decision = State::Rejected;
        assert!(verify_decision(&keys.public_hex(), &bad).is_err());
        let mut bad = d.clone();
        bad.nonce = "other".into();
        assert!(verify_decision(&keys.public_hex(), &bad).is_err());
        let mut bad = d.clone();
        bad.request_sha256 = hex::sha256(b"x");
        assert!(verify_decision(&keys.public_hex(), &bad).is_err());
        // A checkpoint signature is not a decision signature.
        let cp = keys.sign(&checkpoint_bytes(1, "x"));
        assert!(verify(&keys.public_hex(), &decision_bytes(&d), &cp).is_err());
        // argv boundaries matter: ["a b"] and ["a", "b"] differ.
        assert_ne!(
            argv_sha256("t", &["a b".into()]),
            argv_sha256("t", &["a".into(), "b".into()])
        );
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        Keys::load_or_create(dir.path()).unwrap();
        let p = dir.path().join(KEY_FILE);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Keys::load_or_create(dir.path()).err().expect("refused");
        assert!(err.contains("chmod 600"), "{err}");
    }
}
