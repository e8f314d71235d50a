//! An organization's access settings as its administrator changes them:
//! each name parsed strictly, a relaxation of MFA for PHI (all staff →
//! admin only) only with a reason, recorded as its own security event
//! before it takes effect, and every change recorded after it (both fail
//! closed: no change unseen).

use carapace_audit::{SecurityEventKind, SecurityEventSink};
use carapace_tenancy::{
    CalendarDetail, ClinicianScope, OrgSettings, OrganizationRepository, PhiMfa,
};

use crate::access::Caller;
use crate::{ClinicalError, FieldError};

/// Shortest and longest reason for relaxing MFA for PHI, in characters.
pub const REASON_CHARS: std::ops::RangeInclusive<usize> = 10..=500;

/// The settings an administrator asks for, named as the API spells them.
#[derive(Clone, Debug, Default)]
pub struct SettingsInput {
    /// `care_team` or `organization`.
    pub clinician_scope: String,
    /// `admin` or `all_staff`.
    pub phi_mfa: String,
    /// Why MFA for PHI is relaxed (only with a relaxation).
    pub phi_mfa_reason: Option<String>,
    /// `minimal` or `initials`.
    pub calendar_detail: String,
    /// Whether external referrals are on.
    pub external_referrals: bool,
    /// Whether the organization declares a BAA covering AI.
    pub ai_baa: bool,
}

/// The value `name` stands for when it is exactly one of the stored names
/// (`parse` is lenient with stored values; a request is not).
fn strictly<T: Copy>(name: &str, parse: fn(&str) -> T, as_str: fn(T) -> &'static str) -> Option<T> {
    Some(parse(name)).filter(|v| as_str(*v) == name)
}

impl SettingsInput {
    /// The settings asked for; every unknown name is a field error.
    pub fn parse(&self) -> Result<OrgSettings, ClinicalError> {
        let clinician_scope = strictly(
            &self.clinician_scope,
            ClinicianScope::parse,
            ClinicianScope::as_str,
        );
        let phi_mfa = strictly(&self.phi_mfa, PhiMfa::parse, PhiMfa::as_str);
        let calendar_detail = strictly(
            &self.calendar_detail,
            CalendarDetail::parse,
            CalendarDetail::as_str,
        );
        match (clinician_scope, phi_mfa, calendar_detail) {
            (Some(clinician_scope), Some(phi_mfa), Some(calendar_detail)) => Ok(OrgSettings {
                clinician_scope,
                phi_mfa,
                calendar_detail,
                external_referrals: self.external_referrals,
                ai_baa: self.ai_baa,
            }),
            _ => Err(ClinicalError::Invalid(
                [
                    (
                        clinician_scope.is_none(),
                        "clinician_scope",
                        "must be care_team or organization",
                    ),
                    (phi_mfa.is_none(), "phi_mfa", "must be admin or all_staff"),
                    (
                        calendar_detail.is_none(),
                        "calendar_detail",
                        "must be minimal or initials",
                    ),
                ]
                .into_iter()
                .filter(|(wrong, _, _)| *wrong)
                .map(|(_, field, message)| FieldError::new(field, message))
                .collect(),
            )),
        }
    }
}

/// The reason a change of `phi_mfa` from `current` to `next` carries: a
/// relaxation (all staff → admin only) needs one of [`REASON_CHARS`]
/// without control characters; nothing else takes one.
pub fn relaxation_reason(
    current: PhiMfa,
    next: PhiMfa,
    reason: Option<&str>,
) -> Result<Option<String>, ClinicalError> {
    let field =
        |message: &str| ClinicalError::Invalid(vec![FieldError::new("phi_mfa_reason", message)]);
    let relaxing = current == PhiMfa::AllStaff && next == PhiMfa::Admin;
    match (relaxing, reason.map(str::trim)) {
        (true, Some(r))
            if REASON_CHARS.contains(&r.chars().count()) && !r.chars().any(char::is_control) =>
        {
            Ok(Some(r.to_owned()))
        }
        (true, _) => Err(field(
            "relaxing MFA for PHI to admin only needs a reason of 10-500 characters",
        )),
        (false, Some(_)) => Err(field("only a relaxation of phi_mfa takes a reason")),
        (false, None) => Ok(None),
    }
}

/// The ports the organization's administration works over.
pub struct OrgAdministration<'a, O> {
    /// The directory of organizations.
    pub orgs: &'a O,
    /// Security events (the relaxation and the change).
    pub events: &'a dyn SecurityEventSink,
}

impl<O: OrganizationRepository> OrgAdministration<'_, O> {
    /// The settings of `caller`'s organization.
    pub async fn settings(&self, caller: &Caller<'_>) -> Result<OrgSettings, ClinicalError> {
        self.orgs
            .find_by_id(caller.principal.org())
            .await?
            .map(|org| org.settings)
            .ok_or(ClinicalError::NotFound)
    }

    /// Replaces the settings of `caller`'s organization by `wanted`
    /// (parsed, and a relaxation's reason checked, before anything is
    /// recorded); the settings now in force.
    pub async fn change_settings(
        &self,
        caller: &Caller<'_>,
        wanted: &SettingsInput,
    ) -> Result<OrgSettings, ClinicalError> {
        let next = wanted.parse()?;
        let current = self.settings(caller).await?;
        let reason = relaxation_reason(
            current.phi_mfa,
            next.phi_mfa,
            wanted.phi_mfa_reason.as_deref(),
        )?;
        if let Some(reason) = reason {
            // Recorded before the change takes effect: no relaxation unseen.
            let relaxed = caller.security_event(
                SecurityEventKind::PhiMfaRelaxed,
                format!("phi_mfa all_staff -> admin: {reason}"),
            );
            self.events.emit(relaxed).await?;
        }
        if !self
            .orgs
            .update_settings(caller.principal.org(), next)
            .await?
        {
            return Err(ClinicalError::NotFound);
        }
        let changed = caller.security_event(
            SecurityEventKind::OrgSettingsChanged,
            format!(
                "clinician_scope={} phi_mfa={} calendar_detail={} external_referrals={} ai_baa={}",
                next.clinician_scope.as_str(),
                next.phi_mfa.as_str(),
                next.calendar_detail.as_str(),
                next.external_referrals,
                next.ai_baa
            ),
        );
        self.events.emit(changed).await?;
        Ok(next)
    }
}
