//! The per-organization hash chain over audit events, its Ed25519-signed
//! checkpoints, and the verifier that names the first bad position.
//!
//! `leaf = SHA-256("carapace-audit-leaf-v1" 0x00 canonical_event)`, where
//! the canonical event is the one encoding of every field of the event
//! (organization, id, time, actor and its kind, acting-for, action,
//! resource type and id, PHI fields, outcome, origin with the request id,
//! detail). The columns stored beside it for searching (actor, action,
//! resource, outcome, time) are projections of it: the verifier requires
//! each stored column to equal its field of the hashed encoding, so an edit
//! of any column is found at its position like an edit of the body.
//!
//! `link_n = SHA-256("carapace-audit-link-v1" 0x00 link_{n-1} leaf_n)`,
//! `link_0 = SHA-256("carapace-audit-genesis-v1" 0x00 org_id)`. The three
//! domains are distinct, so a leaf can never pass for a link or the start
//! of another organization's chain. A checkpoint signs
//! `(org, position, link, time)`; a tombstone is a checkpoint marking where
//! the chain resumes after retention removed a prefix.
mod checkpoint;
mod verify;

use carapace_tenancy::OrgId;
use sha2::{Digest as _, Sha256};

pub use checkpoint::{Checkpoint, CheckpointKind};
pub use verify::{ChainEntry, ChainVerifier, Finding, Problem, StoredColumns, Verified};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

const LEAF_DOMAIN: &[u8] = b"carapace-audit-leaf-v1\0";
const LINK_DOMAIN: &[u8] = b"carapace-audit-link-v1\0";
const GENESIS_DOMAIN: &[u8] = b"carapace-audit-genesis-v1\0";

/// The leaf hash of an event's canonical bytes.
pub fn leaf_hash(canonical: &[u8]) -> Hash {
    Sha256::new()
        .chain_update(LEAF_DOMAIN)
        .chain_update(canonical)
        .finalize()
        .into()
}

/// The link after `prev` for `leaf`.
pub fn link_hash(prev: &Hash, leaf: &Hash) -> Hash {
    Sha256::new()
        .chain_update(LINK_DOMAIN)
        .chain_update(prev)
        .chain_update(leaf)
        .finalize()
        .into()
}

/// The link before the organization's first event (position 0).
pub fn genesis(org: OrgId) -> Hash {
    Sha256::new()
        .chain_update(GENESIS_DOMAIN)
        .chain_update(org.as_uuid().as_bytes())
        .finalize()
        .into()
}

/// Lower-case hex of a hash.
pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Appends events to a chain: what the chaining job computes for each new
/// event after the current head.
#[derive(Clone, Copy, Debug)]
pub struct ChainHead {
    /// The last position (0 for an empty chain).
    pub position: u64,
    /// Its link.
    pub link: Hash,
}

impl ChainHead {
    /// The head of an empty chain.
    pub fn genesis(org: OrgId) -> Self {
        Self {
            position: 0,
            link: genesis(org),
        }
    }

    /// Appends the event with `canonical` bytes; returns (position, leaf, link).
    pub fn append(&mut self, canonical: &[u8]) -> (u64, Hash, Hash) {
        let leaf = leaf_hash(canonical);
        self.link = link_hash(&self.link, &leaf);
        self.position += 1;
        (self.position, leaf, self.link)
    }
}

#[cfg(test)]
mod tests;
