//! The audit log's Merkle tree: RFC 6962 hashing over each row's entry bytes, laid out as Go's
//! checksum database (`sumdb/tlog`) lays it out, through the `tlog_tiles` crate (Cloudflare's
//! azul port of it). Leaf `i` (0-based) is row `seq = i + 1`.
//!
//! - [`leaf_hash`]: `SHA-256(0x00 || entry bytes)`; interior nodes are `SHA-256(0x01 || l || r)`.
//! - [`Frontier`]: the tree's right edge (the roots of its complete subtrees). Appending a leaf
//!   and computing the root take O(log n) hashes and no reads, which is how the server appends
//!   inside the decision's transaction and how `audit verify` rebuilds the tree as it streams.
//! - The *stored hashes* of a row (tlog's `stored_hashes`): its leaf hash, then the roots of
//!   the subtrees it completes; about two per row. A store keeps them per row ([`locate`] maps
//!   a stored-hash index to the row and offset) and answers [`Query`]s from them: a proof reads
//!   its O(log n) hashes in one batch ([`Query::indexes`], then [`Query::answer`]).

use std::cell::RefCell;

pub use tlog_tiles::{Hash, EMPTY_HASH};
use tlog_tiles::{HashReader, HASH_SIZE};

/// The RFC 6962 leaf hash of a row's entry bytes.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    tlog_tiles::record_hash(entry)
}

/// A hash as base64 (as in C2SP checkpoints and proofs).
pub fn b64(h: &Hash) -> String {
    h.to_string()
}

/// A base64 hash.
pub fn parse_b64(s: &str) -> Result<Hash, String> {
    Hash::parse_hash(s).map_err(|_| format!("{s:?} is not a base64 SHA-256 hash"))
}

/// The tree's right edge: the root of each complete subtree, largest first, with its
/// stored-hash index.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frontier {
    size: u64,
    nodes: Vec<(u64, Hash)>,
}

impl HashReader for Frontier {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| {
                self.nodes
                    .iter()
                    .find(|(at, _)| at == i)
                    .map(|(_, h)| *h)
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl Frontier {
    /// Leaves in the tree.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The stored-hash indexes of the frontier of a tree of `size` leaves.
    pub fn indexes(size: u64) -> Vec<u64> {
        tlog_tiles::sub_tree_index(0, size, vec![])
    }

    /// The frontier of a tree of `size` leaves from the hashes at [`Frontier::indexes`].
    pub fn from_hashes(size: u64, hashes: &[Hash]) -> Frontier {
        let nodes = Self::indexes(size).into_iter().zip(hashes.iter().copied());
        Frontier {
            size,
            nodes: nodes.collect(),
        }
    }

    /// Appends a leaf; returns its stored hashes (the leaf, then each subtree it completes).
    pub fn push(&mut self, leaf: Hash) -> Vec<Hash> {
        let n = self.size;
        let stored = tlog_tiles::stored_hashes_for_record_hash(n, leaf, self)
            .expect("the frontier holds every hash an append reads");
        let completed = (n + 1).trailing_zeros();
        self.nodes
            .truncate(self.nodes.len() - usize::try_from(completed).unwrap_or(0));
        let level = u8::try_from(completed).expect("under 64 levels");
        let top = *stored.last().expect("at least the leaf");
        self.nodes
            .push((tlog_tiles::stored_hash_index(level, n >> level), top));
        self.size += 1;
        stored
    }

    /// The root hash (RFC 6962's Merkle tree hash; the empty tree's is [`EMPTY_HASH`]).
    pub fn root(&self) -> Hash {
        tlog_tiles::tree_hash(self.size, self).expect("the frontier holds the root's hashes")
    }
}

/// Where stored hash `index` is kept: the seq of the row that stored it, and its position in
/// that row's stored hashes.
pub fn locate(index: u64) -> (i64, usize) {
    let (level, k) = tlog_tiles::split_stored_hash_index(index);
    let leaf = ((k + 1) << level) - 1;
    (
        i64::try_from(leaf + 1).expect("a tree under 2^63 rows"),
        usize::from(level),
    )
}

/// Row `seq`'s stored hashes as one blob (32 bytes each), and back.
pub fn pack(hashes: &[Hash]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.0).collect()
}

/// Hash number `at` of a blob made by [`pack`].
pub fn unpack(blob: &[u8], at: usize) -> Option<Hash> {
    let bytes = blob.get(at * HASH_SIZE..(at + 1) * HASH_SIZE)?;
    Some(Hash(bytes.try_into().ok()?))
}

/// What a store is asked for: each is answered from stored hashes read in one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    /// The inclusion proof of leaf `index` (row `index + 1`) in the tree of `size` leaves.
    Inclusion { size: u64, index: u64 },
    /// The consistency proof from the tree of `old` leaves to the tree of `new` leaves.
    Consistency { old: u64, new: u64 },
    /// The root hash of the tree of `size` leaves.
    Root { size: u64 },
    /// The frontier of the tree of `size` leaves (its hashes in [`Frontier::indexes`] order).
    Frontier { size: u64 },
}

/// Records which indexes a tlog function reads, answering with zeros.
#[derive(Default)]
struct Recorder(RefCell<Vec<u64>>);

impl HashReader for Recorder {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        self.0.borrow_mut().extend_from_slice(indexes);
        Ok(vec![Hash::default(); indexes.len()])
    }
}

/// Answers reads from a fixed set of indexes and hashes.
struct Known<'a>(&'a [u64], &'a [Hash]);

impl HashReader for Known<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|i| {
                let at = self.0.iter().position(|k| k == i);
                at.and_then(|a| self.1.get(a).copied())
                    .ok_or(tlog_tiles::Error::IndexesNotInTree)
            })
            .collect()
    }
}

impl Query {
    fn run(&self, r: &dyn HashReader) -> Result<Vec<Hash>, String> {
        let e = |e: tlog_tiles::Error| e.to_string();
        struct Dyn<'a>(&'a dyn HashReader);
        impl HashReader for Dyn<'_> {
            fn read_hashes(&self, i: &[u64]) -> Result<Vec<Hash>, tlog_tiles::Error> {
                self.0.read_hashes(i)
            }
        }
        let r = Dyn(r);
        match *self {
            Query::Inclusion { size, index } => {
                tlog_tiles::prove_record(size, index, &r).map_err(e)
            }
            Query::Consistency { old, new } => tlog_tiles::prove_tree(new, old, &r).map_err(e),
            Query::Root { size } => tlog_tiles::tree_hash(size, &r).map(|h| vec![h]).map_err(e),
            Query::Frontier { size } => r.read_hashes(&Frontier::indexes(size)).map_err(e),
        }
    }

    /// The stored-hash indexes this query reads (none for a proof that needs none).
    pub fn indexes(&self) -> Vec<u64> {
        let rec = Recorder::default();
        let _ = self.run(&rec);
        rec.0.into_inner()
    }

    /// The answer, from the hashes at [`Query::indexes`]: the proof's hashes, the root alone,
    /// or the frontier's hashes.
    pub fn answer(&self, indexes: &[u64], hashes: &[Hash]) -> Result<Vec<Hash>, String> {
        self.run(&Known(indexes, hashes))
    }
}

/// Checks that `proof` shows leaf `index` with hash `leaf` in the tree of `size` leaves and
/// root `root`.
pub fn check_inclusion(
    proof: &[Hash],
    size: u64,
    root: Hash,
    index: u64,
    leaf: Hash,
) -> Result<(), String> {
    tlog_tiles::check_record(&proof.to_vec(), size, root, index, leaf)
        .map_err(|e| format!("the inclusion proof does not verify ({e})"))
}

/// Checks that `proof` shows the tree of `old` leaves and root `old_root` is a prefix of the
/// tree of `new` leaves and root `new_root`.
pub fn check_consistency(
    proof: &[Hash],
    old: u64,
    old_root: Hash,
    new: u64,
    new_root: Hash,
) -> Result<(), String> {
    if old == new {
        return if proof.is_empty() && old_root == new_root {
            Ok(())
        } else {
            Err("two trees of one size with different roots".into())
        };
    }
    tlog_tiles::check_tree(&proof.to_vec(), new, new_root, old, old_root)
        .map_err(|e| format!("the consistency proof does not verify ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// The RFC 6962 test leaves of certificate-transparency's and Trillian's Merkle tree tests,
    /// and the published roots of their prefixes.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// A store: every row's stored hashes by index.
    fn build(leaves: &[Vec<u8>]) -> (Frontier, HashMap<u64, Hash>) {
        let mut f = Frontier::default();
        let mut stored = HashMap::new();
        for (n, data) in leaves.iter().enumerate() {
            let hashes = f.push(leaf_hash(data));
            let first = tlog_tiles::stored_hash_index(0, n as u64);
            for (i, h) in hashes.into_iter().enumerate() {
                let (seq, at) = locate(first + i as u64);
                assert_eq!((seq, at), (n as i64 + 1, i), "stored hash {i} of leaf {n}");
                stored.insert(first + i as u64, h);
            }
        }
        (f, stored)
    }

    fn ask(q: Query, stored: &HashMap<u64, Hash>) -> Vec<Hash> {
        let idx = q.indexes();
        let hashes: Vec<Hash> = idx.iter().map(|i| stored[i]).collect();
        q.answer(&idx, &hashes).unwrap()
    }

    #[test]
    fn the_roots_are_rfc_6962s_published_test_vectors() {
        assert_eq!(Frontier::default().root(), EMPTY_HASH);
        let leaves: Vec<Vec<u8>> = LEAVES
            .iter()
            .map(|h| crate::hex::decode(h).unwrap())
            .collect();
        let mut f = Frontier::default();
        for (i, data) in leaves.iter().enumerate() {
            f.push(leaf_hash(data));
            assert_eq!(
                crate::hex::encode(&f.root().0),
                ROOTS[i],
                "root of {} leaves",
                i + 1
            );
        }
    }

    #[test]
    fn proofs_from_stored_hashes_verify_and_a_frontier_reloads() {
        let leaves: Vec<Vec<u8>> = (0..37u32).map(|i| i.to_be_bytes().to_vec()).collect();
        let (full, stored) = build(&leaves);
        for size in 1..=37u64 {
            let (prefix, _) = build(&leaves[..size as usize]);
            let root = ask(Query::Root { size }, &stored)[0];
            assert_eq!(root, prefix.root());
            let hashes = ask(Query::Frontier { size }, &stored);
            assert_eq!(Frontier::from_hashes(size, &hashes), prefix);
            for index in 0..size {
                let proof = ask(Query::Inclusion { size, index }, &stored);
                let leaf = leaf_hash(&leaves[index as usize]);
                check_inclusion(&proof, size, root, index, leaf).unwrap();
                let wrong = leaf_hash(b"not this row");
                assert!(check_inclusion(&proof, size, root, index, wrong).is_err());
            }
            let proof = ask(Query::Consistency { old: size, new: 37 }, &stored);
            check_consistency(&proof, size, root, 37, full.root()).unwrap();
            let other = build(&[b"fork".to_vec()]).0.root();
            if size > 1 {
                assert!(check_consistency(&proof, size, other, 37, full.root()).is_err());
            }
        }
        // A reloaded frontier appends exactly as the one that never stopped.
        let hashes = ask(Query::Frontier { size: 20 }, &stored);
        let mut again = Frontier::from_hashes(20, &hashes);
        for data in &leaves[20..] {
            again.push(leaf_hash(data));
        }
        assert_eq!(again, full);
        assert_eq!(unpack(&pack(&[root_of(&full)]), 0), Some(full.root()));
    }

    fn root_of(f: &Frontier) -> Hash {
        f.root()
    }
}
