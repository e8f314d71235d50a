//! What the audit trail's writers share, below all of them (the log and
//! its chainer, the witness): the stored form of a hash and of a
//! checkpoint, and the tenant context a system job acts in.

use carapace_audit::chain::{Checkpoint, CheckpointKind, Hash};
use carapace_tenancy::{OrgId, StorageError, SubjectId, TenantContext};

use crate::entity::audit_checkpoint;

/// A stored hash column as a [`Hash`]; a column of the wrong length is an
/// error, never a guess.
pub(crate) fn hash_of(bytes: &[u8]) -> Result<Hash, StorageError> {
    bytes
        .try_into()
        .map_err(|_| StorageError::Internal("malformed audit hash".into()))
}

/// The tenant context of system job `what` (a `system:…` subject) in
/// organization `org`.
pub(crate) fn system(org: OrgId, what: &str) -> TenantContext {
    TenantContext::new(
        org,
        SubjectId::parse(what).unwrap_or_else(|_| unreachable!("static subject")),
    )
}

/// A stored checkpoint row as a [`Checkpoint`]; a malformed row is an error.
pub(crate) fn checkpoint_of(c: &audit_checkpoint::Model) -> Result<Checkpoint, StorageError> {
    Ok(Checkpoint {
        org: OrgId::from_uuid(c.org_id),
        kind: CheckpointKind::parse(&c.kind)
            .ok_or_else(|| StorageError::Internal("unknown checkpoint kind".into()))?,
        position: u64::try_from(c.position).unwrap_or(0),
        link: hash_of(&c.link)?,
        signed_at: c.signed_at,
        signature: c
            .signature
            .as_slice()
            .try_into()
            .map_err(|_| StorageError::Internal("malformed signature".into()))?,
    })
}
