//! Signed checkpoints and tombstones over an organization's chain.

use carapace_tenancy::OrgId;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use time::OffsetDateTime;

use super::{Hash, hex};

const CHECKPOINT_DOMAIN: &[u8] = b"carapace-audit-checkpoint-v1\0";

/// What kind of signed statement a checkpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointKind {
    /// "The chain had reached `position` with `link`."
    Head,
    /// "Positions up to `position` were removed by retention; the chain
    /// resumes after `link`."
    Tombstone,
}

impl CheckpointKind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Head => "head",
            Self::Tombstone => "tombstone",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Head, Self::Tombstone]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A signed statement about an organization's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The organization.
    pub org: OrgId,
    /// Head or tombstone.
    pub kind: CheckpointKind,
    /// The chain position (1-based; 0 is the genesis).
    pub position: u64,
    /// The link at that position.
    pub link: Hash,
    /// When it was signed (whole seconds).
    pub signed_at: OffsetDateTime,
    /// Ed25519 signature over [`Self::payload`].
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// Signs a checkpoint.
    pub fn sign(
        key: &SigningKey,
        org: OrgId,
        kind: CheckpointKind,
        position: u64,
        link: Hash,
        signed_at: OffsetDateTime,
    ) -> Self {
        let signed_at = signed_at.replace_nanosecond(0).unwrap_or(signed_at);
        let mut cp = Self {
            org,
            kind,
            position,
            link,
            signed_at,
            signature: [0; 64],
        };
        cp.signature = key.sign(&cp.payload()).to_bytes();
        cp
    }

    /// The signed bytes.
    pub fn payload(&self) -> Vec<u8> {
        let mut p = CHECKPOINT_DOMAIN.to_vec();
        p.extend_from_slice(
            format!(
                "{}|{}|{}|{}|{}",
                self.org,
                self.kind.as_str(),
                self.position,
                hex(&self.link),
                self.signed_at.unix_timestamp()
            )
            .as_bytes(),
        );
        p
    }

    /// Whether `key` signed exactly this checkpoint.
    pub fn is_signed_by(&self, key: &VerifyingKey) -> bool {
        key.verify(&self.payload(), &Signature::from_bytes(&self.signature))
            .is_ok()
    }
}
