//! Deny by default: every route's access rule, in one table. The
//! [`crate::http::auth::Authorized`] extractor looks the matched route up
//! here and refuses (fail closed) when it is missing; a test checks that
//! every route of the OpenAPI document has exactly one rule.

use carapace_auth::policy::Permission;
use carapace_auth::smart::{Interaction, Interaction as I, ResourceType, ResourceType as T};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone (health, docs, keys, sign-in flows).
    Public,
    /// Any authenticated principal, for its own account (MFA enrolment).
    SignedIn,
    /// A principal granted this permission (see `docs/permissions.md`).
    Needs(Permission),
}

use Access::{Needs, Public, SignedIn};
use Permission::{
    AppointmentRead, AppointmentWrite, AuditRead, BreakGlass, CareAdmin, ClinicalAnalytics,
    KillSwitchWrite, OrgAdmin, PatientDelete, PatientRead, PatientWrite, ServiceKeyAdmin,
    SideEffectReport, UserAdmin,
};
use Permission::{
    AssistantUse, ConsentManage, Consultation, VerificationManage, VerificationWork, VoicemailRead,
};

/// Method, route pattern (as actix and OpenAPI write it) and rule.
pub const ROUTES: &[(&str, &str, Access)] = &[
    ("GET", "/health/live", Public),
    ("GET", "/health/ready", Public),
    ("GET", "/metrics", Public),
    ("GET", "/.well-known/jwks.json", Public),
    ("POST", "/api/v1/auth/login", Public),
    ("POST", "/api/v1/auth/refresh", Public),
    ("POST", "/api/v1/auth/token", Public),
    ("POST", "/api/v1/auth/logout", Public),
    ("POST", "/api/v1/auth/mfa/verify", Public),
    ("POST", "/api/v1/auth/password-reset/request", Public),
    ("POST", "/api/v1/auth/password-reset/confirm", Public),
    ("POST", "/api/v1/auth/mfa/totp/enroll", SignedIn),
    ("POST", "/api/v1/auth/mfa/totp/activate", SignedIn),
    ("GET", "/api/v1/admin/kill-switch", Needs(KillSwitchWrite)),
    ("PUT", "/api/v1/admin/kill-switch", Needs(KillSwitchWrite)),
    ("POST", "/api/v1/patients", Needs(PatientWrite)),
    ("GET", "/api/v1/patients", Needs(PatientRead)),
    ("GET", "/api/v1/patients/{id}", Needs(PatientRead)),
    ("PATCH", "/api/v1/patients/{id}", Needs(PatientWrite)),
    ("DELETE", "/api/v1/patients/{id}", Needs(PatientDelete)),
    ("POST", "/api/v1/service-keys", Needs(ServiceKeyAdmin)),
    ("GET", "/api/v1/service-keys", Needs(ServiceKeyAdmin)),
    (
        "DELETE",
        "/api/v1/service-keys/{id}",
        Needs(ServiceKeyAdmin),
    ),
    (
        "POST",
        "/api/v1/patients/{id}/break-glass",
        Needs(BreakGlass),
    ),
    ("POST", "/api/v1/patients/{id}/care-team", Needs(CareAdmin)),
    ("GET", "/api/v1/patients/{id}/care-team", Needs(PatientRead)),
    ("PUT", "/api/v1/patients/{id}/account", Needs(CareAdmin)),
    ("GET", "/api/v1/organization/settings", Needs(OrgAdmin)),
    ("PUT", "/api/v1/organization/settings", Needs(OrgAdmin)),
    (
        "GET",
        "/api/v1/organization/verification-settings",
        Needs(OrgAdmin),
    ),
    (
        "PUT",
        "/api/v1/organization/verification-settings",
        Needs(OrgAdmin),
    ),
    ("GET", "/api/v1/users", Needs(UserAdmin)),
    ("POST", "/api/v1/users", Needs(UserAdmin)),
    ("PATCH", "/api/v1/users/{id}", Needs(UserAdmin)),
    ("POST", "/api/v1/users/{id}/lock", Needs(UserAdmin)),
    ("POST", "/api/v1/users/{id}/unlock", Needs(UserAdmin)),
    ("POST", "/api/v1/users/{id}/deactivate", Needs(UserAdmin)),
    ("POST", "/api/v1/users/{id}/mfa/reset", Needs(UserAdmin)),
    ("POST", "/api/v1/users/{id}/impersonate", Needs(UserAdmin)),
    ("GET", "/api/v1/audit-events", Needs(AuditRead)),
    ("GET", "/api/v1/audit-events/daily", Needs(AuditRead)),
    ("GET", "/api/v1/audit-chain", Needs(AuditRead)),
    // Compliance and admins, or the patient themself: decided per record
    // by `policy::authorize_access_log`.
    ("GET", "/api/v1/patients/{id}/access-log", SignedIn),
    ("POST", "/api/v1/appointments", Needs(AppointmentWrite)),
    ("GET", "/api/v1/appointments", Needs(AppointmentRead)),
    ("GET", "/api/v1/appointments/{id}", Needs(AppointmentRead)),
    (
        "POST",
        "/api/v1/appointments/{id}/reschedule",
        Needs(AppointmentWrite),
    ),
    (
        "POST",
        "/api/v1/appointments/{id}/cancel",
        Needs(AppointmentWrite),
    ),
    (
        "POST",
        "/api/v1/appointments/{id}/complete",
        Needs(AppointmentWrite),
    ),
    (
        "POST",
        "/api/v1/appointments/{id}/no-show",
        Needs(AppointmentWrite),
    ),
    (
        "GET",
        "/api/v1/practitioners/{subject}/free-slots",
        Needs(AppointmentRead),
    ),
    (
        "GET",
        "/api/v1/patients/{id}/reminder-preferences",
        Needs(AppointmentRead),
    ),
    (
        "PUT",
        "/api/v1/patients/{id}/reminder-preferences",
        Needs(AppointmentWrite),
    ),
    // One's own schedule: any holder of appointment:read.
    ("POST", "/api/v1/calendar-feeds", Needs(AppointmentRead)),
    ("GET", "/api/v1/calendar-feeds", Needs(AppointmentRead)),
    (
        "DELETE",
        "/api/v1/calendar-feeds/{id}",
        Needs(AppointmentRead),
    ),
    // The feed token in the query is the credential.
    ("GET", "/api/v1/calendar.ics", Public),
    (
        "POST",
        "/api/v1/patients/{id}/medications",
        Needs(PatientWrite),
    ),
    (
        "GET",
        "/api/v1/patients/{id}/medications",
        Needs(PatientRead),
    ),
    (
        "POST",
        "/api/v1/patients/{id}/side-effects",
        Needs(SideEffectReport),
    ),
    (
        "GET",
        "/api/v1/patients/{id}/side-effect-correlations",
        Needs(PatientRead),
    ),
    (
        "GET",
        "/api/v1/analytics/side-effect-correlations",
        Needs(ClinicalAnalytics),
    ),
    (
        "GET",
        "/api/v1/analytics/research",
        Needs(ClinicalAnalytics),
    ),
    ("POST", "/api/v1/assistant/messages", Needs(AssistantUse)),
    ("GET", "/api/v1/assistant/messages", Needs(AssistantUse)),
    (
        "POST",
        "/api/v1/patients/{id}/consents",
        Needs(ConsentManage),
    ),
    (
        "GET",
        "/api/v1/patients/{id}/consents",
        Needs(ConsentManage),
    ),
    (
        "POST",
        "/api/v1/patients/{id}/consents/{consent}/revoke",
        Needs(ConsentManage),
    ),
    ("POST", "/api/v1/referrals", Needs(Consultation)),
    ("GET", "/api/v1/referrals", Needs(Consultation)),
    ("GET", "/api/v1/referrals/{id}/record", Needs(Consultation)),
    (
        "POST",
        "/api/v1/verification-tasks",
        Needs(VerificationManage),
    ),
    (
        "GET",
        "/api/v1/verification-tasks",
        Needs(VerificationManage),
    ),
    (
        "GET",
        "/api/v1/verification-tasks/{id}",
        Needs(VerificationManage),
    ),
    (
        "POST",
        "/api/v1/verification-tasks/{id}/cancel",
        Needs(VerificationManage),
    ),
    (
        "GET",
        "/api/v1/verification-tasks/{id}/transcript",
        Needs(VerificationManage),
    ),
    (
        "GET",
        "/api/v1/verification-tasks/queue",
        Needs(VerificationWork),
    ),
    (
        "POST",
        "/api/v1/verification-tasks/{id}/claim",
        Needs(VerificationWork),
    ),
    (
        "GET",
        "/api/v1/verification-tasks/{id}/bot-view",
        Needs(VerificationWork),
    ),
    (
        "POST",
        "/api/v1/verification-tasks/{id}/progress",
        Needs(VerificationWork),
    ),
    (
        "POST",
        "/api/v1/verification-tasks/{id}/transcript",
        Needs(VerificationWork),
    ),
    ("GET", "/api/v1/organization/telephony", Needs(OrgAdmin)),
    ("PUT", "/api/v1/organization/telephony", Needs(OrgAdmin)),
    (
        "POST",
        "/api/v1/verification-tasks/{id}/call",
        Needs(VerificationManage),
    ),
    (
        "POST",
        "/api/v1/verification-tasks/{id}/escalate",
        Needs(VerificationWork),
    ),
    (
        "GET",
        "/api/v1/verification-tasks/{id}/recordings",
        Needs(VerificationManage),
    ),
    (
        "GET",
        "/api/v1/verification-tasks/{id}/recordings/{recording}",
        Needs(VerificationManage),
    ),
    ("POST", "/api/v1/voice/transcriptions", Needs(AssistantUse)),
    ("POST", "/api/v1/voice/speech", Needs(AssistantUse)),
    ("POST", "/api/v1/telephony/{org}/status", Public),
    ("POST", "/api/v1/telephony/{org}/recording", Public),
    ("POST", "/api/v1/telephony/{org}/voice", Public),
    (
        "POST",
        "/api/v1/telephony/{org}/reminders/{reminder}/answer",
        Public,
    ),
    ("POST", "/api/v1/telephony/{org}/voicemail", Public),
    ("GET", "/api/v1/voicemails", Needs(VoicemailRead)),
    ("GET", "/api/v1/voicemails/{id}", Needs(VoicemailRead)),
    ("GET", "/api/v1/voicemails/{id}/audio", Needs(VoicemailRead)),
    ("GET", "/fhir/R4/metadata", Public),
    ("GET", "/fhir/R4/.well-known/smart-configuration", Public),
    ("GET", "/fhir/R4/Patient", Needs(PatientRead)),
    ("POST", "/fhir/R4/Patient", Needs(PatientWrite)),
    ("GET", "/fhir/R4/Patient/{id}", Needs(PatientRead)),
    (
        "GET",
        "/fhir/R4/Patient/{id}/_history/{vid}",
        Needs(PatientRead),
    ),
    ("PUT", "/fhir/R4/Patient/{id}", Needs(PatientWrite)),
    ("DELETE", "/fhir/R4/Patient/{id}", Needs(PatientDelete)),
    ("GET", "/fhir/R4/Appointment", Needs(AppointmentRead)),
    ("POST", "/fhir/R4/Appointment", Needs(AppointmentWrite)),
    ("GET", "/fhir/R4/Appointment/{id}", Needs(AppointmentRead)),
    (
        "GET",
        "/fhir/R4/Appointment/{id}/_history/{vid}",
        Needs(AppointmentRead),
    ),
    ("PUT", "/fhir/R4/Appointment/{id}", Needs(AppointmentWrite)),
    ("GET", "/fhir/R4/AuditEvent", Needs(AuditRead)),
    ("GET", "/fhir/R4/AuditEvent/{id}", Needs(AuditRead)),
    ("GET", "/fhir/R4/CareTeam", Needs(PatientRead)),
    ("GET", "/fhir/R4/CareTeam/{id}", Needs(PatientRead)),
    ("GET", "/fhir/R4/MedicationStatement", Needs(PatientRead)),
    ("POST", "/fhir/R4/MedicationStatement", Needs(PatientWrite)),
    (
        "GET",
        "/fhir/R4/MedicationStatement/{id}",
        Needs(PatientRead),
    ),
    ("GET", "/fhir/R4/AdverseEvent", Needs(PatientRead)),
    ("POST", "/fhir/R4/AdverseEvent", Needs(SideEffectReport)),
    ("GET", "/fhir/R4/AdverseEvent/{id}", Needs(PatientRead)),
    ("GET", "/fhir/R4/Patient/$export", Needs(PatientRead)),
    ("GET", "/fhir/R4/Group/{id}/$export", Needs(PatientRead)),
    ("GET", "/fhir/R4/$export-status/{id}", Needs(PatientRead)),
    ("DELETE", "/fhir/R4/$export-status/{id}", Needs(PatientRead)),
    ("GET", "/fhir/R4/$export-file/{id}/{n}", Needs(PatientRead)),
    ("GET", "/fhir/R4/Task", Needs(VerificationManage)),
    ("GET", "/fhir/R4/Task/{id}", Needs(VerificationManage)),
    (
        "GET",
        "/fhir/R4/Task/{id}/$bot-view",
        Needs(VerificationWork),
    ),
    ("GET", "/fhir/R4/Consent", Needs(ConsentManage)),
    ("POST", "/fhir/R4/Consent", Needs(ConsentManage)),
    ("GET", "/fhir/R4/Consent/{id}", Needs(ConsentManage)),
    ("PUT", "/fhir/R4/Consent/{id}", Needs(ConsentManage)),
    ("GET", "/fhir/R4/ServiceRequest", Needs(Consultation)),
    ("POST", "/fhir/R4/ServiceRequest", Needs(Consultation)),
    ("GET", "/fhir/R4/ServiceRequest/{id}", Needs(Consultation)),
    ("GET", "/fhir/R4/Practitioner", Needs(UserAdmin)),
    ("GET", "/fhir/R4/Practitioner/{id}", Needs(UserAdmin)),
];

/// The FHIR interaction each FHIR route is (and each REST route of the
/// same resource), checked against the token's SMART scopes
/// ([`carapace_auth::policy::authorize_interaction`]) after its rule in
/// [`ROUTES`]: a `user/Patient.r` token reads a patient either way and
/// searches neither way.
pub const INTERACTIONS: &[(&str, &str, ResourceType, Interaction)] = &[
    ("GET", "/api/v1/patients", T::Patient, I::Search),
    ("POST", "/api/v1/patients", T::Patient, I::Create),
    ("GET", "/api/v1/patients/{id}", T::Patient, I::Read),
    ("PATCH", "/api/v1/patients/{id}", T::Patient, I::Update),
    ("DELETE", "/api/v1/patients/{id}", T::Patient, I::Delete),
    ("GET", "/fhir/R4/Patient", T::Patient, I::Search),
    ("POST", "/fhir/R4/Patient", T::Patient, I::Create),
    ("GET", "/fhir/R4/Patient/{id}", T::Patient, I::Read),
    (
        "GET",
        "/fhir/R4/Patient/{id}/_history/{vid}",
        T::Patient,
        I::Read,
    ),
    ("PUT", "/fhir/R4/Patient/{id}", T::Patient, I::Update),
    ("DELETE", "/fhir/R4/Patient/{id}", T::Patient, I::Delete),
    ("GET", "/fhir/R4/Appointment", T::Appointment, I::Search),
    ("POST", "/fhir/R4/Appointment", T::Appointment, I::Create),
    ("GET", "/fhir/R4/Appointment/{id}", T::Appointment, I::Read),
    (
        "GET",
        "/fhir/R4/Appointment/{id}/_history/{vid}",
        T::Appointment,
        I::Read,
    ),
    (
        "PUT",
        "/fhir/R4/Appointment/{id}",
        T::Appointment,
        I::Update,
    ),
    ("GET", "/fhir/R4/AuditEvent", T::AuditEvent, I::Search),
    ("GET", "/fhir/R4/AuditEvent/{id}", T::AuditEvent, I::Read),
    ("GET", "/fhir/R4/CareTeam", T::CareTeam, I::Search),
    ("GET", "/fhir/R4/CareTeam/{id}", T::CareTeam, I::Read),
    (
        "GET",
        "/fhir/R4/MedicationStatement",
        T::MedicationStatement,
        I::Search,
    ),
    (
        "POST",
        "/fhir/R4/MedicationStatement",
        T::MedicationStatement,
        I::Create,
    ),
    (
        "GET",
        "/fhir/R4/MedicationStatement/{id}",
        T::MedicationStatement,
        I::Read,
    ),
    ("GET", "/fhir/R4/AdverseEvent", T::AdverseEvent, I::Search),
    ("POST", "/fhir/R4/AdverseEvent", T::AdverseEvent, I::Create),
    (
        "GET",
        "/fhir/R4/AdverseEvent/{id}",
        T::AdverseEvent,
        I::Read,
    ),
    ("GET", "/fhir/R4/Patient/$export", T::Patient, I::Search),
    ("GET", "/fhir/R4/Group/{id}/$export", T::Patient, I::Search),
    ("GET", "/fhir/R4/$export-status/{id}", T::Patient, I::Search),
    (
        "DELETE",
        "/fhir/R4/$export-status/{id}",
        T::Patient,
        I::Search,
    ),
    (
        "GET",
        "/fhir/R4/$export-file/{id}/{n}",
        T::Patient,
        I::Search,
    ),
    ("GET", "/fhir/R4/Task", T::Task, I::Search),
    ("GET", "/fhir/R4/Task/{id}", T::Task, I::Read),
    ("GET", "/fhir/R4/Task/{id}/$bot-view", T::Task, I::Read),
    ("GET", "/fhir/R4/Consent", T::Consent, I::Search),
    ("POST", "/fhir/R4/Consent", T::Consent, I::Create),
    ("PUT", "/fhir/R4/Consent/{id}", T::Consent, I::Update),
    (
        "POST",
        "/fhir/R4/ServiceRequest",
        T::ServiceRequest,
        I::Create,
    ),
    ("GET", "/fhir/R4/Consent/{id}", T::Consent, I::Read),
    (
        "GET",
        "/fhir/R4/ServiceRequest",
        T::ServiceRequest,
        I::Search,
    ),
    (
        "GET",
        "/fhir/R4/ServiceRequest/{id}",
        T::ServiceRequest,
        I::Read,
    ),
    ("GET", "/fhir/R4/Practitioner", T::Practitioner, I::Search),
    (
        "GET",
        "/fhir/R4/Practitioner/{id}",
        T::Practitioner,
        I::Read,
    ),
];

/// The FHIR interaction of `method` on the route `pattern`, if it is one.
pub fn interaction(method: &str, pattern: &str) -> Option<(ResourceType, Interaction)> {
    INTERACTIONS
        .iter()
        .find(|(m, p, _, _)| *m == method && *p == pattern)
        .map(|(_, _, t, i)| (*t, *i))
}

/// The rule for `method` on the route `pattern`, if there is one.
pub fn rule(method: &str, pattern: &str) -> Option<Access> {
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method && *p == pattern)
        .map(|(_, _, a)| *a)
}

/// The route table as it appears in `docs/permissions.md`.
pub fn routes_markdown() -> String {
    let mut out = String::from("| method | route | access |\n| --- | --- | --- |");
    for (method, pattern, access) in ROUTES {
        let access = match access {
            Public => "public".to_owned(),
            SignedIn => "signed in (own account)".to_owned(),
            Needs(p) => format!("`{p}`"),
        };
        out.push_str(&format!("\n| {method} | `{pattern}` | {access} |"));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::OpenApi as _;

    #[test]
    fn every_documented_route_has_exactly_one_rule_and_every_rule_a_route() {
        let doc = crate::routes::docs::ApiDoc::openapi();
        let mut documented = Vec::new();
        for (path, item) in &doc.paths.paths {
            let ops = [
                ("GET", item.get.is_some()),
                ("POST", item.post.is_some()),
                ("PUT", item.put.is_some()),
                ("PATCH", item.patch.is_some()),
                ("DELETE", item.delete.is_some()),
            ];
            for (method, present) in ops {
                if present {
                    documented.push((method, path.clone()));
                    let rules = ROUTES
                        .iter()
                        .filter(|(m, p, _)| *m == method && *p == path)
                        .count();
                    assert_eq!(rules, 1, "{method} {path} needs exactly one access rule");
                }
            }
        }
        for (method, pattern, _) in ROUTES {
            assert!(
                documented.iter().any(|(m, p)| m == method && p == pattern),
                "{method} {pattern} has a rule but no documented route"
            );
        }
    }

    #[test]
    fn every_documented_operation_names_its_access_rule() {
        let doc = serde_json::to_value(crate::routes::docs::ApiDoc::openapi())
            .unwrap_or_else(|e| panic!("{e}"));
        for (method, pattern, rule) in ROUTES {
            let op = &doc["paths"][*pattern][method.to_ascii_lowercase()];
            assert_eq!(
                op["x-carapace-access"],
                crate::routes::docs::access_label(*rule),
                "{method} {pattern}"
            );
            assert!(
                op["description"]
                    .as_str()
                    .is_some_and(|d| d.contains("Access: `")),
                "{method} {pattern}"
            );
        }
    }

    #[test]
    fn every_fhir_route_that_needs_a_permission_is_an_interaction() {
        for (method, pattern, rule) in ROUTES {
            let fhir = pattern.starts_with("/fhir/");
            let needs = matches!(rule, Needs(_));
            let is_interaction = interaction(method, pattern).is_some();
            assert!(!(fhir && needs) || is_interaction, "{method} {pattern}");
            assert!(!is_interaction || needs, "{method} {pattern}");
        }
        for (method, pattern, _, _) in INTERACTIONS {
            assert!(rule(method, pattern).is_some(), "{method} {pattern}");
        }
    }

    #[test]
    fn docs_permissions_md_matches_the_code() {
        let doc = include_str!("../../../../docs/permissions.md");
        let matrix = carapace_auth::policy::matrix_markdown();
        assert!(
            doc.contains(&matrix),
            "docs/permissions.md must contain the matrix:\n{matrix}"
        );
        let routes = routes_markdown();
        assert!(
            doc.contains(&routes),
            "docs/permissions.md must contain the route table:\n{routes}"
        );
    }
}
