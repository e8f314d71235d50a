//! Consultations and record sharing: a patient's recorded consent (which
//! record sections, for whom, until when, revocable) and referrals that
//! share a patient's record with another clinician under that consent, in
//! the same organization or, when both allow it, another one.
//!
//! The receiving clinician's access is decided at every read by
//! [`Consent::allows`]: it follows the consent exactly and stops when the
//! consent is revoked or expires.

mod sharing;

pub use sharing::{RecordSharing, SharedRecord};

use std::fmt;
use std::future::Future;

use carapace_audit::Access;
use carapace_tenancy::{OrgId, OrgSettings, SubjectId, TenantContext};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use crate::patient::PatientId;
use crate::{ClinicalError, FieldError};

/// A section of a patient's record that a consent may share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Section {
    /// Names, birth date, contact.
    Demographics,
    /// Appointments.
    Appointments,
    /// Medication statements and side-effect reports.
    Medications,
}

impl Section {
    /// Every section.
    pub const ALL: [Section; 3] = [Self::Demographics, Self::Appointments, Self::Medications];

    /// Stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Demographics => "demographics",
            Self::Appointments => "appointments",
            Self::Medications => "medications",
        }
    }

    /// The section named `s`.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.as_str() == s)
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest a consent may run.
pub const CONSENT_MAX: Duration = Duration::days(366);

carapace_tenancy::entity_id! {
    /// A consent's id.
    pub struct ConsentId;
}

carapace_tenancy::entity_id! {
    /// A referral's id (the same in both organizations).
    pub struct ReferralId;
}

/// A recorded consent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consent {
    /// Its id.
    pub id: ConsentId,
    /// Whose record.
    pub patient: PatientId,
    /// The organization of the clinician it is for.
    pub recipient_org: OrgId,
    /// The clinician it is for.
    pub recipient: SubjectId,
    /// What may be shared (sorted, no repeats).
    pub sections: Vec<Section>,
    /// Until when.
    pub expires_at: OffsetDateTime,
    /// When it was withdrawn, if it was.
    pub revoked_at: Option<OffsetDateTime>,
    /// Who recorded it.
    pub recorded_by: SubjectId,
    /// When.
    pub created_at: OffsetDateTime,
}

impl Consent {
    /// Whether it is in force at `now`: recorded, not withdrawn, not expired.
    pub fn active(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none_or(|r| r > now) && now < self.expires_at
    }

    /// Whether it lets its recipient read `section` at `now`.
    pub fn allows(&self, section: Section, now: OffsetDateTime) -> bool {
        self.active(now) && self.sections.contains(&section)
    }

    /// The sections it lets its recipient read at `now` (none once
    /// withdrawn or expired).
    pub fn readable(&self, now: OffsetDateTime) -> Vec<Section> {
        Section::ALL
            .into_iter()
            .filter(|s| self.allows(*s, now))
            .collect()
    }

    /// Whether it is for `clinician` of `org`.
    pub fn is_for(&self, org: OrgId, clinician: &SubjectId) -> bool {
        self.recipient_org == org && &self.recipient == clinician
    }
}

/// A validated consent to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewConsent {
    /// The clinician it is for.
    pub recipient: SubjectId,
    /// Their organization.
    pub recipient_org: OrgId,
    /// What may be shared.
    pub sections: Vec<Section>,
    /// Until when.
    pub expires_at: OffsetDateTime,
}

/// A consent as a client sends it (the recipient's organization resolved
/// by the caller: its own, or another by slug).
#[derive(Clone, Debug, Default)]
pub struct ConsentInput {
    /// The clinician's subject.
    pub recipient: String,
    /// Section names.
    pub sections: Vec<String>,
    /// RFC 3339 end.
    pub expires_at: String,
}

impl ConsentInput {
    /// Validates every field at `now`, for a recipient in `recipient_org`.
    pub fn parse(
        self,
        recipient_org: OrgId,
        now: OffsetDateTime,
    ) -> Result<NewConsent, ClinicalError> {
        let mut errors = Vec::new();
        let recipient = SubjectId::parse(&self.recipient)
            .map_err(|_| errors.push(FieldError::new("recipient", "must be 1-255 bytes")))
            .ok();
        let mut sections = Vec::new();
        if self.sections.is_empty() || self.sections.len() > Section::ALL.len() {
            errors.push(FieldError::new("sections", "name 1 to 3 sections"));
        }
        for s in self.sections.iter().take(Section::ALL.len()) {
            match Section::parse(s) {
                Some(x) if !sections.contains(&x) => sections.push(x),
                Some(_) => errors.push(FieldError::new("sections", "must not repeat a section")),
                None => errors.push(FieldError::new(
                    "sections",
                    "must be demographics, appointments or medications",
                )),
            }
        }
        sections.sort();
        let expires_at = if self.expires_at.len() > 64 {
            None
        } else {
            // Kept to the microsecond, as stored: what is answered is what
            // is read back.
            OffsetDateTime::parse(&self.expires_at, &Rfc3339)
                .ok()
                .and_then(|t| t.replace_microsecond(t.microsecond()).ok())
        };
        match expires_at {
            None => errors.push(FieldError::new(
                "expires_at",
                "must be an RFC 3339 date-time",
            )),
            Some(t) if t <= now => {
                errors.push(FieldError::new("expires_at", "must be in the future"))
            }
            Some(t) if t > now + CONSENT_MAX => errors.push(FieldError::new(
                "expires_at",
                "may be at most 366 days ahead",
            )),
            Some(_) => {}
        }
        match (recipient, expires_at) {
            (Some(recipient), Some(expires_at)) if errors.is_empty() => Ok(NewConsent {
                recipient,
                recipient_org,
                sections,
                expires_at,
            }),
            _ => Err(ClinicalError::Invalid(errors)),
        }
    }
}

/// A referral: `from` shares a patient of `org` with `to` of `to_org`
/// under `consent`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referral {
    /// Its id (the same on both sides).
    pub id: ReferralId,
    /// The patient's organization.
    pub org: OrgId,
    /// The patient.
    pub patient: PatientId,
    /// The consent it rests on.
    pub consent: ConsentId,
    /// The referring clinician.
    pub from: SubjectId,
    /// The receiving clinician's organization.
    pub to_org: OrgId,
    /// The receiving clinician.
    pub to: SubjectId,
    /// When.
    pub created_at: OffsetDateTime,
}

/// Whether a referral of a patient in `from` to a clinician in `to` may be
/// made: within one organization always; across organizations only when
/// both allow external referrals.
pub fn may_refer(
    from: OrgId,
    from_settings: &OrgSettings,
    to: OrgId,
    to_settings: &OrgSettings,
) -> Result<(), ClinicalError> {
    if from == to || (from_settings.external_referrals && to_settings.external_referrals) {
        Ok(())
    } else {
        Err(ClinicalError::Refused {
            code: "external_referrals_off",
            detail: "referrals to another organization need both organizations to allow them",
        })
    }
}

/// Whether `consent` lets `patient` be referred (at `now`): it must be
/// this patient's, in force, and name at least one section.
pub fn check_consent(
    consent: Option<&Consent>,
    patient: PatientId,
    now: OffsetDateTime,
) -> Result<(), ClinicalError> {
    match consent {
        Some(c) if c.patient == patient && c.active(now) && !c.sections.is_empty() => Ok(()),
        _ => Err(ClinicalError::Invalid(vec![FieldError::new(
            "consent_id",
            "must be an active consent of this patient",
        )])),
    }
}

/// Storage of consents and referrals. Consents and referrals live in the
/// patient's organization; a referral also leaves a mirror in the
/// receiving organization (so its clinician can find it) and records an
/// event on both sides.
pub trait ConsultationRepository: Send + Sync {
    /// Records a consent (`consent.create`); `None` if no such patient.
    fn record_consent(
        &self,
        access: &Access,
        patient: PatientId,
        consent: &NewConsent,
    ) -> impl Future<Output = Result<Option<Consent>, ClinicalError>> + Send;

    /// The patient's consents (`consent.list`); `None` if no such patient.
    fn consents(
        &self,
        access: &Access,
        patient: PatientId,
    ) -> impl Future<Output = Result<Option<Vec<Consent>>, ClinicalError>> + Send;

    /// Withdraws a consent at `now` (`consent.revoke`); `false` if the
    /// patient has no such unrevoked consent.
    fn revoke_consent(
        &self,
        access: &Access,
        patient: PatientId,
        id: ConsentId,
        now: OffsetDateTime,
    ) -> impl Future<Output = Result<bool, ClinicalError>> + Send;

    /// One consent (no PHI: ids, times, sections).
    fn consent(
        &self,
        ctx: &TenantContext,
        id: ConsentId,
    ) -> impl Future<Output = Result<Option<Consent>, ClinicalError>> + Send;

    /// Makes a referral (`referral.create` in the patient's organization,
    /// `referral.received` in the receiving one).
    fn refer(
        &self,
        access: &Access,
        referral: &Referral,
    ) -> impl Future<Output = Result<(), ClinicalError>> + Send;

    /// Referrals to `access`'s subject (`incoming`) or from it.
    fn referrals(
        &self,
        access: &Access,
        incoming: bool,
    ) -> impl Future<Output = Result<Vec<Referral>, ClinicalError>> + Send;

    /// The referral `id` addressed to `access`'s subject or made by it
    /// (`referral.read`, whether found or not).
    fn referral(
        &self,
        access: &Access,
        id: ReferralId,
    ) -> impl Future<Output = Result<Option<Referral>, ClinicalError>> + Send;

    /// The referral `id` addressed to `access`'s subject, as the receiving
    /// side knows it (its source organization and patient).
    fn incoming(
        &self,
        access: &Access,
        id: ReferralId,
    ) -> impl Future<Output = Result<Option<Referral>, ClinicalError>> + Send;

    /// The referral and its consent as the patient's organization holds
    /// them (read under `source`, the patient's organization's context).
    fn shared(
        &self,
        source: &TenantContext,
        id: ReferralId,
    ) -> impl Future<Output = Result<Option<(Referral, Consent)>, ClinicalError>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-01 12:00 UTC);

    fn input(sections: &[&str], expires: &str) -> ConsentInput {
        ConsentInput {
            recipient: "dr-who".into(),
            sections: sections.iter().map(|s| (*s).to_owned()).collect(),
            expires_at: expires.into(),
        }
    }

    fn consent(sections: &[Section]) -> Consent {
        Consent {
            id: ConsentId::from_uuid(uuid::Uuid::nil()),
            patient: PatientId::from_uuid(uuid::Uuid::nil()),
            recipient_org: OrgId::from_uuid(uuid::Uuid::nil()),
            recipient: SubjectId::parse("dr-who").unwrap_or_else(|_| unreachable!()),
            sections: sections.to_vec(),
            expires_at: NOW + Duration::days(7),
            revoked_at: None,
            recorded_by: SubjectId::parse("dr-a").unwrap_or_else(|_| unreachable!()),
            created_at: NOW,
        }
    }

    #[test]
    fn access_follows_scope_expiry_and_revocation_exactly() {
        let mut c = consent(&[Section::Medications]);
        assert!(c.allows(Section::Medications, NOW));
        assert!(!c.allows(Section::Demographics, NOW));
        assert!(!c.allows(Section::Medications, NOW + Duration::days(7)));
        c.revoked_at = Some(NOW + Duration::hours(1));
        assert!(c.allows(Section::Medications, NOW));
        assert!(c.readable(NOW + Duration::hours(2)).is_empty());
    }

    #[test]
    fn consents_are_validated_field_by_field() {
        let org = OrgId::generate();
        let ok = input(&["medications", "demographics"], "2026-12-20T00:00:00Z").parse(org, NOW);
        assert_eq!(
            ok.map(|c| c.sections).ok(),
            Some(vec![Section::Demographics, Section::Medications])
        );
        let fields = |r: Result<NewConsent, ClinicalError>| match r {
            Err(ClinicalError::Invalid(e)) => e.into_iter().map(|e| e.field).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            fields(input(&[], "2026-12-20T00:00:00Z").parse(org, NOW)),
            vec!["sections"]
        );
        assert_eq!(
            fields(input(&["notes"], "2026-12-20T00:00:00Z").parse(org, NOW)),
            vec!["sections"]
        );
        assert_eq!(
            fields(input(&["medications"], "2026-11-01T00:00:00Z").parse(org, NOW)),
            vec!["expires_at"]
        );
        assert_eq!(
            fields(input(&["medications"], "2028-11-01T00:00:00Z").parse(org, NOW)),
            vec!["expires_at"]
        );
    }

    #[test]
    fn external_referrals_need_both_organizations() {
        let (a, b) = (OrgId::generate(), OrgId::generate());
        let off = OrgSettings::default();
        let on = OrgSettings {
            external_referrals: true,
            ..OrgSettings::default()
        };
        assert!(may_refer(a, &off, a, &off).is_ok());
        assert!(may_refer(a, &on, b, &off).is_err());
        assert!(may_refer(a, &off, b, &on).is_err());
        assert!(may_refer(a, &on, b, &on).is_ok());
    }

    #[test]
    fn a_referral_needs_an_active_consent_of_the_patient() {
        let c = consent(&[Section::Appointments]);
        assert!(check_consent(Some(&c), c.patient, NOW).is_ok());
        assert!(check_consent(None, c.patient, NOW).is_err());
        assert!(check_consent(Some(&c), PatientId::generate(), NOW).is_err());
        assert!(check_consent(Some(&c), c.patient, NOW + Duration::days(8)).is_err());
    }
}
