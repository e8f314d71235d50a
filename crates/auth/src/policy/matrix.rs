//! The permission set and the role → permission matrix (data, mirrored
//! in `docs/permissions.md` by a test).

use std::fmt;

use crate::Role;

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
    /// Manage care teams and link patient records to patients' accounts.
    CareAdmin,
    /// Change the organization's access settings.
    OrgAdmin,
    /// Declare emergency (break-glass) access to a patient outside one's
    /// care team: a written reason, an hour, recorded and alerted.
    BreakGlass,
    /// Read appointments (of related patients) and practitioners'
    /// availability.
    AppointmentRead,
    /// Book, move, cancel, complete appointments and set reminder
    /// preferences (of related patients).
    AppointmentWrite,
    /// Report a side effect (of a related patient, or one's own).
    SideEffectReport,
    /// Read organization-wide clinical aggregates (small cells withheld).
    ClinicalAnalytics,
    /// Record, list and withdraw a patient's sharing consents (of a
    /// related patient, or one's own).
    ConsentManage,
    /// Refer a related patient to another clinician under a consent, and
    /// read what is shared with oneself.
    Consultation,
    /// Create, follow and cancel prior-authorization verification tasks
    /// and read their transcripts.
    VerificationManage,
    /// Work verification tasks as a bot: claim, minimal view, progress,
    /// transcript upload (service keys).
    VerificationWork,
    /// Use the AI assistant (where both BAAs are in place).
    AssistantUse,
    /// List, read and play the organization's voicemails (the front desk
    /// and administrators; a voicemail is not yet tied to a care team).
    VoicemailRead,
}

impl Permission {
    /// Every permission, in a stable order.
    pub const ALL: [Permission; 20] = [
        Permission::PatientRead,
        Permission::PatientWrite,
        Permission::PatientDelete,
        Permission::UserAdmin,
        Permission::ServiceKeyAdmin,
        Permission::AuditRead,
        Permission::KillSwitchWrite,
        Permission::CareAdmin,
        Permission::OrgAdmin,
        Permission::BreakGlass,
        Permission::AppointmentRead,
        Permission::AppointmentWrite,
        Permission::SideEffectReport,
        Permission::ClinicalAnalytics,
        Permission::ConsentManage,
        Permission::Consultation,
        Permission::VerificationManage,
        Permission::VerificationWork,
        Permission::AssistantUse,
        Permission::VoicemailRead,
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
            Permission::CareAdmin => "care:admin",
            Permission::OrgAdmin => "org:admin",
            Permission::BreakGlass => "patient:break_glass",
            Permission::AppointmentRead => "appointment:read",
            Permission::AppointmentWrite => "appointment:write",
            Permission::SideEffectReport => "side_effect:report",
            Permission::ClinicalAnalytics => "clinical_analytics:read",
            Permission::ConsentManage => "consent:manage",
            Permission::Consultation => "consultation",
            Permission::VerificationManage => "verification:manage",
            Permission::VerificationWork => "verification:work",
            Permission::AssistantUse => "assistant:use",
            Permission::VoicemailRead => "voicemail:read",
        }
    }

    /// Whether it touches PHI.
    pub fn is_phi(self) -> bool {
        matches!(
            self,
            Permission::PatientRead
                | Permission::PatientWrite
                | Permission::PatientDelete
                | Permission::AppointmentRead
                | Permission::AppointmentWrite
                | Permission::SideEffectReport
                | Permission::ConsentManage
                | Permission::Consultation
                | Permission::VerificationManage
                | Permission::VerificationWork
                | Permission::VoicemailRead
        )
    }

    /// Whether it is an administrative operation (always needs MFA).
    pub fn is_admin_operation(self) -> bool {
        matches!(
            self,
            Permission::UserAdmin
                | Permission::ServiceKeyAdmin
                | Permission::KillSwitchWrite
                | Permission::CareAdmin
                | Permission::OrgAdmin
        )
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

use Permission::{
    AppointmentRead, AppointmentWrite, AuditRead, BreakGlass, CareAdmin, ClinicalAnalytics,
    KillSwitchWrite, OrgAdmin, PatientDelete, PatientRead, PatientWrite, ServiceKeyAdmin,
    SideEffectReport, UserAdmin,
};
use Permission::{
    AssistantUse, ConsentManage, Consultation, VerificationManage, VerificationWork, VoicemailRead,
};

/// The role → permission matrix. Patient permissions of `clinician` reach
/// the care team only and `patient`'s its own record only: see
/// [`authorize_patient`](super::authorize_patient).
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
            CareAdmin,
            OrgAdmin,
            AppointmentRead,
            AppointmentWrite,
            SideEffectReport,
            ClinicalAnalytics,
            ConsentManage,
            VerificationManage,
            AssistantUse,
            VoicemailRead,
        ],
    ),
    (
        Role::Clinician,
        &[
            PatientRead,
            PatientWrite,
            BreakGlass,
            AppointmentRead,
            AppointmentWrite,
            SideEffectReport,
            ConsentManage,
            Consultation,
            AssistantUse,
        ],
    ),
    (
        Role::Staff,
        &[
            PatientRead,
            AppointmentRead,
            AppointmentWrite,
            VerificationManage,
            AssistantUse,
            VoicemailRead,
        ],
    ),
    (Role::Viewer, &[PatientRead, AppointmentRead]),
    (
        Role::Patient,
        &[
            PatientRead,
            AppointmentRead,
            AppointmentWrite,
            SideEffectReport,
            ConsentManage,
            Consultation,
        ],
    ),
    (Role::Compliance, &[AuditRead, ClinicalAnalytics]),
    (Role::Service, &[VerificationWork]),
];

/// The permissions a role grants.
pub fn permissions_of(role: Role) -> &'static [Permission] {
    MATRIX
        .iter()
        .find(|(r, _)| *r == role)
        .map_or(&[], |(_, p)| p)
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
            let granted = permissions_of(role).contains(&p);
            let mfa = p.is_admin_operation() || (p.is_phi() && role == Role::Admin);
            let cell = match (granted, mfa, role) {
                (false, _, _) => " — |",
                (true, true, _) => " yes (MFA) |",
                (true, false, Role::Clinician) if p.is_phi() => " care team |",
                (true, false, Role::Patient) if p.is_phi() => " own record |",
                (true, false, _) => " yes |",
            };
            out.push_str(cell);
        }
    }
    out.push('\n');
    out
}
