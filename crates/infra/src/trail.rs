//! What the audit trail's writers share, below all of them (the log and
//! its chainer, the witness): the stored form of a hash, and the tenant
//! context a system job acts in.

use carapace_audit::chain::Hash;
use carapace_tenancy::{OrgId, StorageError, SubjectId, TenantContext};

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
