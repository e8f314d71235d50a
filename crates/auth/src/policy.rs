//! Pure authorization: the permission set, the role → permission matrix
//! (data, mirrored in `docs/permissions.md` by a test), and
//! [`authorize`]. Deny by default: anything not granted here is refused.

use std::fmt;

use crate::{Principal, Role};

/// Something a caller may be allowed to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Permission {
    /// Read patient records of the organization.
    PatientRead,
    /// Create and change patient records.
    PatientWrite,
    /// Delete patient records.
    PatientDelete,
    /// Administer the organization's users.
    UserAdmin,
    /// Create, list and revoke service keys.
    ServiceKeyAdmin,
    /// Read the audit trail.
    AuditRead,
    /// Turn the kill switch on or off.
    KillSwitchWrite,
}

impl Permission {
    /// Every permission, in a stable order.
    pub const ALL: [Permission; 7] = [
        Permission::PatientRead,
        Permission::PatientWrite,
        Permission::PatientDelete,
        Permission::UserAdmin,
        Permission::ServiceKeyAdmin,
        Permission::AuditRead,
        Permission::KillSwitchWrite,
    ];

    /// The permission's name, `resource:action`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::PatientRead => "patient:read",
            Permission::PatientWrite => "patient:write",
            Permission::PatientDelete => "patient:delete",
            Permission::UserAdmin => "user:admin",
            Permission::ServiceKeyAdmin => "service_key:admin",
            Permission::AuditRead => "audit:read",
            Permission::KillSwitchWrite => "kill_switch:write",
        }
    }

    /// Whether it touches PHI.
    pub fn is_phi(self) -> bool {
        matches!(
            self,
            Permission::PatientRead | Permission::PatientWrite | Permission::PatientDelete
        )
    }

    /// Whether it is an administrative operation (always needs MFA).
    pub fn is_admin_operation(self) -> bool {
        matches!(
            self,
            Permission::UserAdmin | Permission::ServiceKeyAdmin | Permission::KillSwitchWrite
        )
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use Permission::{
    AuditRead, KillSwitchWrite, PatientDelete, PatientRead, PatientWrite, ServiceKeyAdmin,
    UserAdmin,
};

/// The role → permission matrix. `patient` gets no record permission yet:
/// reaching only one's own record needs the relationship rules, and until
/// then it is denied rather than widened.
pub const MATRIX: &[(Role, &[Permission])] = &[
    (
        Role::Admin,
        &[
            PatientRead,
            PatientWrite,
            PatientDelete,
            UserAdmin,
            ServiceKeyAdmin,
            AuditRead,
            KillSwitchWrite,
        ],
    ),
    (Role::Clinician, &[PatientRead, PatientWrite]),
    (Role::Staff, &[PatientRead]),
    (Role::Viewer, &[PatientRead]),
    (Role::Patient, &[]),
    (Role::Compliance, &[AuditRead]),
    (Role::Service, &[]),
];

/// The permissions a role grants.
pub fn permissions_of(role: Role) -> &'static [Permission] {
    MATRIX
        .iter()
        .find(|(r, _)| *r == role)
        .map_or(&[], |(_, p)| p)
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DenyReason {
    /// No role of the principal grants the permission.
    MissingPermission(Permission),
    /// Granted, but only to an MFA session: step up and retry.
    StepUpRequired(Permission),
}

/// The outcome of [`authorize`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Go ahead.
    Allow,
    /// Refuse, for this reason.
    Deny(DenyReason),
}

/// Whether `principal` may use `permission` in its own organization.
///
/// MFA step-up: administrative operations always need an MFA session, and
/// so does PHI access by a principal whose only grant comes from `admin`.
pub fn authorize(principal: &Principal, permission: Permission) -> Decision {
    let granting: Vec<Role> = principal
        .roles()
        .iter()
        .filter(|r| permissions_of(*r).contains(&permission))
        .collect();
    if granting.is_empty() {
        return Decision::Deny(DenyReason::MissingPermission(permission));
    }
    let admin_only = granting.iter().all(|r| *r == Role::Admin);
    let needs_mfa = permission.is_admin_operation() || (permission.is_phi() && admin_only);
    if needs_mfa && !principal.mfa() {
        return Decision::Deny(DenyReason::StepUpRequired(permission));
    }
    Decision::Allow
}

/// The matrix as the Markdown table in `docs/permissions.md`.
pub fn matrix_markdown() -> String {
    let mut out = String::from("| role |");
    for p in Permission::ALL {
        out.push_str(&format!(" `{p}` |"));
    }
    out.push_str("\n| --- |");
    for _ in Permission::ALL {
        out.push_str(" :-: |");
    }
    for role in Role::ALL {
        out.push_str(&format!("\n| `{role}` |"));
        for p in Permission::ALL {
            let cell = match (
                permissions_of(role).contains(&p),
                p.is_admin_operation() || (p.is_phi() && role == Role::Admin),
            ) {
                (false, _) => " — |",
                (true, true) => " yes (MFA) |",
                (true, false) => " yes |",
            };
            out.push_str(cell);
        }
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RoleSet;
    use carapace_tenancy::{OrgId, SubjectId};

    fn principal(roles: &[Role], mfa: bool) -> Principal {
        let subject = SubjectId::parse("u1").unwrap_or_else(|_| unreachable!());
        Principal::new(subject, OrgId::generate(), RoleSet::of(roles)).with_mfa(mfa)
    }

    /// Every role × permission cell, with and without MFA.
    #[test]
    fn full_matrix_with_and_without_mfa() {
        use Decision::Allow;
        use DenyReason::{MissingPermission as No, StepUpRequired as StepUp};
        for role in Role::ALL {
            for p in Permission::ALL {
                let granted = permissions_of(role).contains(&p);
                let mfa_needed = p.is_admin_operation() || (p.is_phi() && role == Role::Admin);
                let with_mfa = authorize(&principal(&[role], true), p);
                let without = authorize(&principal(&[role], false), p);
                match (granted, mfa_needed) {
                    (false, _) => {
                        assert_eq!(with_mfa, Decision::Deny(No(p)), "{role} {p}");
                        assert_eq!(without, Decision::Deny(No(p)), "{role} {p}");
                    }
                    (true, true) => {
                        assert_eq!(with_mfa, Allow, "{role} {p}");
                        assert_eq!(without, Decision::Deny(StepUp(p)), "{role} {p}");
                    }
                    (true, false) => {
                        assert_eq!(with_mfa, Allow, "{role} {p}");
                        assert_eq!(without, Allow, "{role} {p}");
                    }
                }
            }
        }
    }

    #[test]
    fn key_cells_of_the_matrix() {
        let allowed =
            |roles: &[Role], mfa, p| authorize(&principal(roles, mfa), p) == Decision::Allow;
        assert!(allowed(&[Role::Clinician], false, PatientWrite));
        assert!(!allowed(&[Role::Clinician], true, PatientDelete));
        assert!(allowed(&[Role::Viewer], false, PatientRead));
        assert!(!allowed(&[Role::Viewer], true, PatientWrite));
        assert!(!allowed(&[Role::Staff], true, PatientWrite));
        assert!(
            !allowed(&[Role::Patient], true, PatientRead),
            "no self-access rule yet: deny"
        );
        assert!(!allowed(&[Role::Compliance], true, PatientRead));
        assert!(allowed(&[Role::Compliance], false, AuditRead));
        assert!(!allowed(&[Role::Service], true, PatientRead));
        assert!(
            !allowed(&[Role::Admin], false, PatientRead),
            "admin PHI access needs MFA"
        );
        assert!(
            allowed(&[Role::Admin, Role::Clinician], false, PatientRead),
            "a clinician grant needs none"
        );
        assert!(
            !allowed(&[Role::Admin, Role::Clinician], false, UserAdmin),
            "admin operations always do"
        );
        assert!(!allowed(&[], true, PatientRead));
    }

    #[test]
    fn permission_names_are_unique() {
        let mut names: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Permission::ALL.len());
    }
}
