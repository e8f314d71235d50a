//! Tenancy: who a piece of data belongs to.
//!
//! This crate owns the identifiers of organizations (tenants), the
//! [`TenantContext`] that every tenant-scoped repository call requires, and
//! the org-bound pagination [`cursor`]s. It never talks to a database or the
//! network: storage adapters live in `carapace-infra`.
//!
//! The rule it exists to enforce: tenant data is reachable only through APIs
//! that take a `&TenantContext`. There is no `Option<OrgId>` anywhere.

pub mod cursor;
mod error;
mod id;
mod org;

#[doc(hidden)]
pub use serde as __serde;
#[doc(hidden)]
pub use uuid as __uuid;

pub use error::{StorageError, TenancyError};
pub use org::{
    CalendarDetail, ClinicianScope, NewOrganization, OrgId, OrgName, OrgSettings, OrgSlug,
    Organization, OrganizationRepository, PhiMfa,
};

use std::fmt;

/// The stable identifier of whoever acts (the token's `sub`), at most
/// [`SubjectId::MAX_LEN`] bytes.
#[derive(Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SubjectId(String);

impl TryFrom<String> for SubjectId {
    type Error = TenancyError;
    fn try_from(raw: String) -> Result<Self, TenancyError> {
        Self::parse(&raw)
    }
}

impl From<SubjectId> for String {
    fn from(s: SubjectId) -> Self {
        s.0
    }
}

impl SubjectId {
    /// Longest accepted subject, in bytes.
    pub const MAX_LEN: usize = 255;

    /// Parses a subject: non-empty, at most [`Self::MAX_LEN`] bytes, no control characters.
    pub fn parse(raw: &str) -> Result<Self, TenancyError> {
        if raw.is_empty() || raw.len() > Self::MAX_LEN || raw.chars().any(char::is_control) {
            return Err(TenancyError::InvalidSubject);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The subject as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectId({})", self.0)
    }
}

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who is acting, for which organization. Every tenant-scoped repository
/// method takes one of these; the storage layer turns it into the database's
/// tenant setting (row-level security on PostgreSQL) and an `org_id` filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TenantContext {
    org: OrgId,
    actor: SubjectId,
}

impl TenantContext {
    /// A context for `actor` acting inside `org`.
    pub fn new(org: OrgId, actor: SubjectId) -> Self {
        Self { org, actor }
    }

    /// The organization all data access is confined to.
    pub fn org(&self) -> OrgId {
        self.org
    }

    /// The acting subject.
    pub fn actor(&self) -> &SubjectId {
        &self.actor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_limits() {
        assert!(SubjectId::parse("user-1").is_ok());
        assert!(SubjectId::parse("").is_err());
        assert!(SubjectId::parse(&"a".repeat(256)).is_err());
        assert!(SubjectId::parse("a\nb").is_err());
    }
}
