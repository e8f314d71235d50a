//! Audit trail of PHI access and security events.
//!
//! Today this crate owns the [`SecurityEvent`] type and the
//! [`SecurityEventSink`] port through which authorization denials,
//! host/org mismatches, impersonation and (later) break-glass are emitted.
//! The audit issue adds the tamper-evident PHI access log and persists
//! these events; until then the wired sink logs them. It must never depend
//! on a database driver, HTTP framework or logger sink, and events never
//! carry PHI.

use std::fmt;

use carapace_tenancy::{OrgId, SubjectId};

/// Kinds of security events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SecurityEventKind {
    /// A principal was refused a permission.
    AuthorizationDenied,
    /// The request's host named another organization than the token.
    HostOrgMismatch,
    /// An admin started impersonating a user.
    ImpersonationStarted,
    /// A clinician declared emergency access to a patient outside their care.
    BreakGlass,
    /// An admin changed the organization's access settings.
    OrgSettingsChanged,
    /// A request named another organization's resource (answered 404).
    CrossTenantAttempt,
}

impl SecurityEventKind {
    /// A stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationDenied => "authorization_denied",
            Self::HostOrgMismatch => "host_org_mismatch",
            Self::ImpersonationStarted => "impersonation_started",
            Self::BreakGlass => "break_glass",
            Self::OrgSettingsChanged => "org_settings_changed",
            Self::CrossTenantAttempt => "cross_tenant_attempt",
        }
    }
}

impl fmt::Display for SecurityEventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something security-relevant that happened. `detail` must not hold PHI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityEvent {
    /// What happened.
    pub kind: SecurityEventKind,
    /// In which organization.
    pub org: OrgId,
    /// Who did it.
    pub subject: SubjectId,
    /// Identifiers and reasons only (a permission, a slug, a user id).
    pub detail: String,
}

/// Where security events go.
pub trait SecurityEventSink: Send + Sync {
    /// Records `event`.
    fn emit(&self, event: SecurityEvent);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_stable_names() {
        assert_eq!(
            SecurityEventKind::AuthorizationDenied.to_string(),
            "authorization_denied"
        );
        assert_eq!(
            SecurityEventKind::HostOrgMismatch.as_str(),
            "host_org_mismatch"
        );
        assert_eq!(
            SecurityEventKind::ImpersonationStarted.as_str(),
            "impersonation_started"
        );
    }
}
