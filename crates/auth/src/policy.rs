//! Pure authorization policies. Deny by default: anything not granted here
//! is refused.

use crate::{AuthError, Principal, Role};

/// What a caller wants to do with patient records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatientAction {
    /// Read a record or list records.
    Read,
    /// Create, change or delete a record.
    Write,
}

/// Roles that may perform `action` on patient records (interim matrix; the
/// authorization issue replaces it with the full permission matrix).
pub fn patient_roles(action: PatientAction) -> &'static [Role] {
    match action {
        PatientAction::Read => &[Role::Admin, Role::Clinician, Role::Staff, Role::Viewer],
        PatientAction::Write => &[Role::Admin, Role::Clinician],
    }
}

/// Whether `principal` may perform `action` on its own organization's
/// patient records.
pub fn authorize_patients(principal: &Principal, action: PatientAction) -> Result<(), AuthError> {
    if principal.roles().any(patient_roles(action)) {
        Ok(())
    } else {
        Err(AuthError::Forbidden)
    }
}

/// Whether `principal` may create, list and revoke its organization's
/// service keys (administrators only).
pub fn authorize_service_key_admin(principal: &Principal) -> Result<(), AuthError> {
    if principal.roles().contains(Role::Admin) {
        Ok(())
    } else {
        Err(AuthError::Forbidden)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RoleSet;
    use carapace_tenancy::{OrgId, SubjectId};

    fn principal(roles: &[Role]) -> Principal {
        let subject = SubjectId::parse("u1").unwrap_or_else(|_| unreachable!());
        Principal::new(subject, OrgId::generate(), RoleSet::of(roles))
    }

    #[test]
    fn interim_patient_matrix() {
        use PatientAction::{Read, Write};
        let table: &[(Role, bool, bool)] = &[
            (Role::Admin, true, true),
            (Role::Clinician, true, true),
            (Role::Staff, true, false),
            (Role::Viewer, true, false),
            (Role::Patient, false, false),
            (Role::Compliance, false, false),
            (Role::Service, false, false),
        ];
        for &(role, read, write) in table {
            let p = principal(&[role]);
            assert_eq!(authorize_patients(&p, Read).is_ok(), read, "{role} read");
            assert_eq!(authorize_patients(&p, Write).is_ok(), write, "{role} write");
        }
    }

    #[test]
    fn only_admins_manage_service_keys() {
        assert!(authorize_service_key_admin(&principal(&[Role::Admin])).is_ok());
        for role in [
            Role::Clinician,
            Role::Staff,
            Role::Viewer,
            Role::Patient,
            Role::Compliance,
            Role::Service,
        ] {
            assert!(
                authorize_service_key_admin(&principal(&[role])).is_err(),
                "{role}"
            );
        }
    }

    #[test]
    fn no_roles_means_no_access() {
        let p = principal(&[]);
        assert!(authorize_patients(&p, PatientAction::Read).is_err());
    }
}
