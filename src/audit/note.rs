//! The transparency log's text formats, on the `signed_note` and `tlog_tiles` crates:
//!
//! - **checkpoints** (c2sp.org/tlog-checkpoint): `origin\nsize\nbase64(root)\n`, signed as a
//!   **signed note** (c2sp.org/signed-note) with the server's Ed25519 key under the key name
//!   `origin` (signature type 0x01);
//! - **cosignatures** (c2sp.org/tlog-cosignature, Ed25519 `cosignature/v1`, type 0x04): a
//!   witness's note signature `key ID || u64 timestamp || Ed25519(cosignature/v1\ntime T\n ||
//!   checkpoint)`;
//! - **verifier keys** (`name+hex(key ID)+base64(type || public key)`), [`VKey`];
//! - the **add-checkpoint** request body of c2sp.org/tlog-witness, [`AddCheckpoint`].
//!
//! Signing uses the server's (or the witness's) ring key (`signing::Keys`) through the crate's
//! `Signer` trait; [`VKey`] is the crate's `Verifier` for both signature types. The note and
//! checkpoint syntax (parsing, the signature lines, key IDs) is the crates' own.

use signed_note::{Note, Signature, Signer, Verifier, VerifierList};
use tlog_tiles::Checkpoint as TreeHead;

use super::tree::{b64, parse_b64, Hash};
use crate::hex;
use crate::signing::Keys;

/// Signature type of an Ed25519 note signature (the log's).
pub const ALG_ED25519: u8 = 0x01;
/// Signature type of an Ed25519 `cosignature/v1` (a witness's).
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// A verifier key: a key name, its key ID, its signature type and its Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VKey {
    pub name: String,
    pub id: u32,
    pub alg: u8,
    pub key: [u8; 32],
}

impl VKey {
    /// The key `name` has for `key` under signature type `alg` (the key ID as C2SP computes it).
    pub fn new(name: &str, alg: u8, key: [u8; 32]) -> Result<VKey, String> {
        if !signed_note::is_key_name_valid(name) {
            return Err(format!(
                "{name:?} is not a key name (no spaces, no '+', not empty)"
            ));
        }
        let mut typed = vec![alg];
        typed.extend_from_slice(&key);
        Ok(VKey {
            name: name.into(),
            id: signed_note::key_id(name, &typed),
            alg,
            key,
        })
    }

    /// The key of `name` for the public half of `keys`.
    pub fn of(keys: &Keys, name: &str, alg: u8) -> Result<VKey, String> {
        Self::from_hex(name, alg, &keys.public_hex())
    }

    /// The key of `name` for a hex Ed25519 public key.
    pub fn from_hex(name: &str, alg: u8, public_hex: &str) -> Result<VKey, String> {
        let key = hex::decode(public_hex)
            .and_then(|k| <[u8; 32]>::try_from(k).ok())
            .ok_or("the public key is not 64 hex characters")?;
        Self::new(name, alg, key)
    }

    /// Parses `name+hex(id)+base64(type || key)`; the ID must be the one the name and key give.
    pub fn parse(text: &str) -> Result<VKey, String> {
        let bad = || format!("{text:?} is not a verifier key (name+id+base64)");
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        let data = hex::base64_decode(data).ok_or_else(bad)?;
        let (alg, key) = data.split_first().ok_or_else(bad)?;
        if *alg != ALG_ED25519 && *alg != ALG_COSIGNATURE_V1 {
            return Err(format!(
                "{text:?}: signature type {alg:#04x} is neither Ed25519 (0x01) nor an Ed25519 \
                 cosignature (0x04)"
            ));
        }
        let key = <[u8; 32]>::try_from(key).map_err(|_| bad())?;
        let v = VKey::new(name, *alg, key)?;
        if id.len() != 8 || u32::from_str_radix(id, 16).ok() != Some(v.id) {
            return Err(format!(
                "{text:?}: the key ID {id} is not the one of this name and key ({:08x})",
                v.id
            ));
        }
        Ok(v)
    }

    /// A verifier list of these keys.
    pub fn list(keys: &[VKey]) -> VerifierList {
        VerifierList::new(
            keys.iter()
                .map(|k| Box::new(k.clone()) as Box<dyn Verifier>)
                .collect(),
        )
    }
}

impl std::fmt::Display for VKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut typed = vec![self.alg];
        typed.extend_from_slice(&self.key);
        let data = hex::base64_encode(&typed);
        write!(f, "{}+{:08x}+{data}", self.name, self.id)
    }
}

fn ed25519_ok(key: &[u8; 32], msg: &[u8], sig: &[u8]) -> bool {
    ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, key)
        .verify(msg, sig)
        .is_ok()
}

/// The message a `cosignature/v1` signs: two header lines, then the checkpoint's text.
fn cosigned_message(time: u64, checkpoint: &[u8]) -> Vec<u8> {
    let mut msg = format!("cosignature/v1\ntime {time}\n").into_bytes();
    msg.extend_from_slice(checkpoint);
    msg
}

impl Verifier for VKey {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        match self.alg {
            ALG_ED25519 => ed25519_ok(&self.key, msg, sig),
            ALG_COSIGNATURE_V1 => {
                // A cosignature is over a checkpoint, and carries the time it was made.
                if TreeHead::from_bytes(msg).is_err() || sig.len() != 72 {
                    return false;
                }
                let (time, sig) = sig.split_at(8);
                let time = u64::from_be_bytes(time.try_into().expect("8 bytes"));
                time < 1 << 63 && ed25519_ok(&self.key, &cosigned_message(time, msg), sig)
            }
            _ => false,
        }
    }
}

/// A ring key signing notes as `vkey` names it: the log's checkpoints (type 0x01), or a
/// witness's cosignatures (type 0x04) at `time` (POSIX seconds).
pub struct KeySigner<'a> {
    pub vkey: VKey,
    pub keys: &'a Keys,
    pub time: u64,
}

impl Signer for KeySigner<'_> {
    fn name(&self) -> &str {
        &self.vkey.name
    }

    fn key_id(&self) -> u32 {
        self.vkey.id
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        let raw = |m: &[u8]| hex::decode(&self.keys.sign(m)).ok_or_else(signature::Error::new);
        match self.vkey.alg {
            ALG_COSIGNATURE_V1 => {
                let mut out = self.time.to_be_bytes().to_vec();
                out.extend(raw(&cosigned_message(self.time, msg))?);
                Ok(out)
            }
            _ => raw(msg),
        }
    }
}

/// A signed checkpoint, parsed but not yet trusted.
#[derive(Debug)]
pub struct SignedCheckpoint {
    note: Note,
    pub origin: String,
    pub size: u64,
    pub root: Hash,
}

impl SignedCheckpoint {
    /// Signs the checkpoint `origin`, `size`, `root` with the server's key; the note's text.
    pub fn sign(keys: &Keys, origin: &str, size: u64, root: Hash) -> Result<String, String> {
        let head = TreeHead::new(origin, size, root, "").map_err(|e| e.to_string())?;
        let vkey = VKey::of(keys, origin, ALG_ED25519)?;
        let mut note = Note::new(&head.to_bytes(), &[]).map_err(|e| e.to_string())?;
        let signer = KeySigner {
            vkey,
            keys,
            time: 0,
        };
        note.add_sigs(&[&signer]).map_err(|e| e.to_string())?;
        text(&note)
    }

    /// Parses a signed note holding a checkpoint.
    pub fn parse(text: &str) -> Result<SignedCheckpoint, String> {
        let note =
            Note::from_bytes(text.as_bytes()).map_err(|e| format!("not a signed note ({e})"))?;
        let head = TreeHead::from_bytes(note.text()).map_err(|e| format!("{e}"))?;
        Ok(SignedCheckpoint {
            origin: head.origin().to_string(),
            size: head.size(),
            root: *head.hash(),
            note,
        })
    }

    /// The checkpoint's text (its first three lines), which every signature covers.
    pub fn text(&self) -> &[u8] {
        self.note.text()
    }

    /// The names of `keys` whose signatures it carries and that verify. An error if one of
    /// them signed it but the signature does not verify: the text was changed after signing.
    pub fn signed_by(&self, keys: &[VKey]) -> Result<Vec<String>, String> {
        match self.note.verify(&VKey::list(keys)) {
            Ok((verified, _)) => Ok(verified.iter().map(|s| s.name().to_string()).collect()),
            Err(signed_note::NoteError::UnverifiedNote) => Ok(Vec::new()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The whole note: its text and every signature line.
    pub fn to_text(&self) -> String {
        text(&self.note).unwrap_or_default()
    }

    /// Adds the signature lines of `lines` (one `— name base64` per line) that are not already
    /// there.
    pub fn add_lines(&mut self, lines: &str) -> Result<(), String> {
        let mut all = self.to_text();
        let have = all.clone();
        for line in lines.lines().filter(|l| !l.trim().is_empty()) {
            Signature::from_bytes(line.as_bytes()).map_err(|e| format!("{line:?}: {e}"))?;
            if !have.lines().any(|l| l == line) {
                all.push_str(line);
                all.push('\n');
            }
        }
        self.note = Note::from_bytes(all.as_bytes()).map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Cosigns it as a witness at `time`: the signature line to add.
    pub fn cosign(&self, keys: &Keys, name: &str, time: u64) -> Result<String, String> {
        let signer = KeySigner {
            vkey: VKey::of(keys, name, ALG_COSIGNATURE_V1)?,
            keys,
            time,
        };
        let sig = signer.sign(self.text()).map_err(|e| e.to_string())?;
        let line = Signature::new(name.into(), signer.vkey.id, sig).map_err(|e| e.to_string())?;
        String::from_utf8(line.to_bytes()).map_err(|e| e.to_string())
    }
}

fn text(note: &Note) -> Result<String, String> {
    String::from_utf8(note.to_bytes()).map_err(|e| e.to_string())
}

/// `note` with the signature lines of each of `cosigned` whose checkpoint text is the same; and
/// those whose text differs (a checkpoint re-signed after a witness cosigned it), unchanged.
pub fn merge_cosigned(note: &str, cosigned: &[&str]) -> (String, Vec<String>) {
    let Ok(mut cp) = SignedCheckpoint::parse(note) else {
        return (
            note.to_string(),
            cosigned.iter().map(|s| s.to_string()).collect(),
        );
    };
    let mut other = Vec::new();
    for c in cosigned {
        match SignedCheckpoint::parse(c) {
            Ok(w) if w.text() == cp.text() => {
                let lines = w.to_text();
                let sigs = lines.rsplit_once("\n\n").map_or("", |(_, s)| s);
                if cp.add_lines(sigs).is_err() {
                    other.push(c.to_string());
                }
            }
            _ => other.push(c.to_string()),
        }
    }
    (cp.to_text(), other)
}

/// The time (POSIX seconds) in a cosignature line, if it is one.
pub fn cosignature_time(line: &str) -> Option<u64> {
    let sig = Signature::from_bytes(line.trim_end().as_bytes()).ok()?;
    let ts = sig.signature().get(..8)?;
    Some(u64::from_be_bytes(ts.try_into().ok()?))
}

/// The body of a c2sp.org/tlog-witness `add-checkpoint` request: the size of the checkpoint
/// the witness last cosigned, a consistency proof from it, and the new signed checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct AddCheckpoint {
    pub old: u64,
    pub proof: Vec<Hash>,
    pub checkpoint: String,
}

/// Most consistency proof lines a request may carry (tlog-witness).
pub const MAX_PROOF_LINES: usize = 63;

impl AddCheckpoint {
    pub fn to_text(&self) -> String {
        let mut s = format!("old {}\n", self.old);
        for h in &self.proof {
            s.push_str(&b64(h));
            s.push('\n');
        }
        s.push('\n');
        s.push_str(&self.checkpoint);
        s
    }

    pub fn parse(body: &str) -> Result<AddCheckpoint, String> {
        let (head, checkpoint) = body
            .split_once("\n\n")
            .ok_or("no empty line before the checkpoint")?;
        let mut lines = head.split('\n');
        let old = lines
            .next()
            .and_then(|l| l.strip_prefix("old "))
            .filter(|n| *n == "0" || !n.starts_with('0'))
            .and_then(|n| n.parse::<u64>().ok())
            .ok_or("the first line is not `old N`")?;
        let proof = lines.map(parse_b64).collect::<Result<Vec<_>, _>>()?;
        if proof.len() > MAX_PROOF_LINES {
            return Err(format!("more than {MAX_PROOF_LINES} proof lines"));
        }
        Ok(AddCheckpoint {
            old,
            proof,
            checkpoint: checkpoint.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_c2sp_signed_note_example_verifies_with_its_verifier_key() {
        // c2sp.org/signed-note, "Example".
        let vkey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
        let note = "This is an example message.\n\n\u{2014} example.com/foo \
                    Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        let k = VKey::parse(vkey).unwrap();
        assert_eq!(k.to_string(), vkey, "round trip");
        let n = Note::from_bytes(note.as_bytes()).unwrap();
        let (ok, _) = n.verify(&VKey::list(std::slice::from_ref(&k))).unwrap();
        assert_eq!(ok[0].name(), "example.com/foo");
        // The crate's own verifier agrees.
        let std = signed_note::StandardVerifier::new(vkey).unwrap();
        n.verify(&VerifierList::new(vec![Box::new(std)])).unwrap();
        let bad = note.replace("example message", "exampel message");
        let n = Note::from_bytes(bad.as_bytes()).unwrap();
        assert!(n.verify(&VKey::list(&[k])).is_err());
    }

    #[test]
    fn the_c2sp_cosignature_example_carries_its_documented_time() {
        // c2sp.org/tlog-cosignature: the example's witness line; its signed message is
        // documented with `time 1679315147`.
        let line = "\u{2014} witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==";
        assert_eq!(cosignature_time(line), Some(1_679_315_147));
        let sig = Signature::from_bytes(line.as_bytes()).unwrap();
        assert_eq!(sig.signature().len(), 72, "timestamp and Ed25519 signature");
    }

    #[test]
    fn checkpoints_and_cosignatures_round_trip_through_the_crates_parsers() {
        let dir = tempfile::tempdir().unwrap();
        let log = Keys::load_or_create(dir.path()).unwrap();
        let wdir = tempfile::tempdir().unwrap();
        let witness = Keys::load_or_create(wdir.path()).unwrap();
        let root = crate::audit::tree::leaf_hash(b"x");
        let text = SignedCheckpoint::sign(&log, "example.com/log", 7, root).unwrap();
        let mut cp = SignedCheckpoint::parse(&text).unwrap();
        assert_eq!(
            (cp.origin.as_str(), cp.size, cp.root),
            ("example.com/log", 7, root)
        );
        let head = TreeHead::from_bytes(cp.text()).unwrap();
        assert_eq!(
            head.to_bytes(),
            cp.text(),
            "the crate reads back what was signed"
        );
        let log_key = VKey::of(&log, "example.com/log", ALG_ED25519).unwrap();
        let std = signed_note::StandardVerifier::new(&log_key.to_string()).unwrap();
        Note::from_bytes(text.as_bytes())
            .unwrap()
            .verify(&VerifierList::new(vec![Box::new(std)]))
            .unwrap();
        let w = VKey::of(&witness, "witness.example/w1", ALG_COSIGNATURE_V1).unwrap();
        assert_eq!(VKey::parse(&w.to_string()).unwrap(), w);
        let line = cp
            .cosign(&witness, "witness.example/w1", 1_700_000_000)
            .unwrap();
        assert_eq!(cosignature_time(&line), Some(1_700_000_000));
        cp.add_lines(&line).unwrap();
        let again = SignedCheckpoint::parse(&cp.to_text()).unwrap();
        let names = again.signed_by(&[log_key.clone(), w.clone()]).unwrap();
        assert_eq!(names, ["example.com/log", "witness.example/w1"]);
        // A cosignature over another root does not verify for this one.
        let other = SignedCheckpoint::sign(&log, "example.com/log", 7, Hash::default()).unwrap();
        let mut forged = SignedCheckpoint::parse(&other).unwrap();
        forged.add_lines(&line).unwrap();
        assert!(forged.signed_by(&[log_key, w]).is_err());
    }

    #[test]
    fn add_checkpoint_bodies_round_trip_and_the_spec_example_parses() {
        // c2sp.org/tlog-witness, the add-checkpoint example (its log signatures shortened to
        // one; the body's layout is what is checked).
        let example = "old 20852014\nPlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\
            jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\
            5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n\
            /6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\n\
            example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\
            \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n";
        let req = AddCheckpoint::parse(example).unwrap();
        assert_eq!((req.old, req.proof.len()), (20_852_014, 4));
        assert_eq!(req.to_text(), example);
        let cp = SignedCheckpoint::parse(&req.checkpoint).unwrap();
        assert_eq!(
            (cp.origin.as_str(), cp.size),
            ("example.com/behind-the-sofa", 20_852_163)
        );
        for bad in [
            "old 01\n\nx",
            "new 1\n\nx",
            "old 1\nnot base64\n\nx",
            "old 1\n",
        ] {
            assert!(AddCheckpoint::parse(bad).is_err(), "{bad:?}");
        }
    }
}
