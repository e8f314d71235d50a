//! In-memory fakes of the other stores the use cases read: appointments,
//! consents and referrals, organizations, medications, local accounts.

use std::collections::HashMap;
use std::sync::Mutex;

use carapace_audit::Access;
use carapace_auth::local::{Account, AccountStore, Email, LoginState, UserId};
use carapace_auth::{AuthError, RoleSet};
use carapace_tenancy::{
    NewOrganization, OrgId, OrgName, OrgSettings, OrgSlug, Organization, OrganizationRepository,
    SubjectId, TenancyError, TenantContext,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::fakes::{NOW, lock, unused};
use crate::ClinicalError;
use crate::appointment::{
    Appointment, AppointmentId, AppointmentPage, AppointmentQuery, AppointmentRepository,
    AppointmentScope, AppointmentStatus, Channel, NewAppointment, PlannedReminder, Slot,
};
use crate::consultation::{
    Consent, ConsentId, ConsultationRepository, NewConsent, Referral, ReferralId,
};
use crate::medication::{
    MedicationDetails, MedicationHistory, MedicationRepository, SideEffectDetails, Timeline,
};
use crate::patient::PatientId;

/// Appointments: busy times per practitioner, and the queries listed.
#[derive(Default)]
pub(crate) struct FakeAppointments {
    /// Appointment → its patient.
    pub patients: Mutex<HashMap<AppointmentId, PatientId>>,
    /// Busy slots of each practitioner.
    pub busy: Mutex<HashMap<SubjectId, Vec<Slot>>>,
    /// Scopes listed, with the organization of the access.
    pub listed: Mutex<Vec<(AppointmentScope, OrgId)>>,
    /// Bookings made, with the reminders planned.
    pub booked: Mutex<Vec<(NewAppointment, Vec<PlannedReminder>)>>,
}

impl AppointmentRepository for FakeAppointments {
    async fn patient_of(
        &self,
        _: &TenantContext,
        id: AppointmentId,
    ) -> Result<Option<PatientId>, ClinicalError> {
        Ok(lock(&self.patients).get(&id).copied())
    }

    async fn book(
        &self,
        access: &Access,
        new: &NewAppointment,
        reminders: &[PlannedReminder],
    ) -> Result<Appointment, ClinicalError> {
        lock(&self.booked).push((new.clone(), reminders.to_vec()));
        Ok(Appointment {
            id: AppointmentId::generate(),
            org: access.org(),
            patient: new.patient,
            practitioner: new.practitioner.clone(),
            slot: new.slot,
            time_zone: new.time_zone.clone(),
            status: AppointmentStatus::Booked,
            reason: None,
            created_at: NOW,
            updated_at: NOW,
        })
    }

    async fn get(
        &self,
        _: &Access,
        _: AppointmentId,
    ) -> Result<Option<Appointment>, ClinicalError> {
        unused()
    }

    async fn reschedule(
        &self,
        _: &Access,
        _: AppointmentId,
        _: Slot,
        _: &[PlannedReminder],
    ) -> Result<Option<Appointment>, ClinicalError> {
        unused()
    }

    async fn finish(
        &self,
        _: &Access,
        _: AppointmentId,
        _: AppointmentStatus,
    ) -> Result<Option<Appointment>, ClinicalError> {
        unused()
    }

    async fn list(
        &self,
        access: &Access,
        query: &AppointmentQuery,
    ) -> Result<AppointmentPage, ClinicalError> {
        lock(&self.listed).push((query.scope.clone(), access.org()));
        Ok(AppointmentPage {
            items: Vec::new(),
            next_after: None,
        })
    }

    async fn busy(
        &self,
        _: &Access,
        practitioner: &SubjectId,
        _: Slot,
    ) -> Result<Vec<Slot>, ClinicalError> {
        Ok(lock(&self.busy)
            .get(practitioner)
            .cloned()
            .unwrap_or_default())
    }

    async fn set_opt_outs(
        &self,
        _: &Access,
        _: PatientId,
        _: &[(Channel, bool)],
    ) -> Result<bool, ClinicalError> {
        unused()
    }

    async fn opt_outs(
        &self,
        _: &Access,
        _: PatientId,
    ) -> Result<Option<Vec<Channel>>, ClinicalError> {
        unused()
    }
}

/// Consents and referrals; the referrals made.
#[derive(Default)]
pub(crate) struct FakeConsultations {
    /// Consents, by id.
    pub consents: Mutex<HashMap<ConsentId, (OrgId, Consent)>>,
    /// Referrals at the source, by id, with their consent.
    pub referrals: Mutex<HashMap<ReferralId, Referral>>,
    /// Referrals made through `refer`.
    pub made: Mutex<Vec<Referral>>,
}

impl ConsultationRepository for FakeConsultations {
    async fn record_consent(
        &self,
        _: &Access,
        _: PatientId,
        _: &NewConsent,
    ) -> Result<Option<Consent>, ClinicalError> {
        unused()
    }

    async fn consents(
        &self,
        _: &Access,
        _: PatientId,
    ) -> Result<Option<Vec<Consent>>, ClinicalError> {
        unused()
    }

    async fn revoke_consent(
        &self,
        _: &Access,
        _: PatientId,
        _: ConsentId,
        _: OffsetDateTime,
    ) -> Result<bool, ClinicalError> {
        unused()
    }

    async fn consent(
        &self,
        ctx: &TenantContext,
        id: ConsentId,
    ) -> Result<Option<Consent>, ClinicalError> {
        Ok(lock(&self.consents)
            .get(&id)
            .filter(|(org, _)| *org == ctx.org())
            .map(|(_, c)| c.clone()))
    }

    async fn refer(&self, _: &Access, referral: &Referral) -> Result<(), ClinicalError> {
        lock(&self.made).push(referral.clone());
        Ok(())
    }

    async fn referrals(&self, _: &Access, _: bool) -> Result<Vec<Referral>, ClinicalError> {
        unused()
    }

    async fn referral(&self, _: &Access, _: ReferralId) -> Result<Option<Referral>, ClinicalError> {
        unused()
    }

    async fn incoming(
        &self,
        access: &Access,
        id: ReferralId,
    ) -> Result<Option<Referral>, ClinicalError> {
        Ok(lock(&self.referrals)
            .get(&id)
            .filter(|r| r.to_org == access.org() && &r.to == access.tenant().actor())
            .cloned())
    }

    async fn shared(
        &self,
        source: &TenantContext,
        id: ReferralId,
    ) -> Result<Option<(Referral, Consent)>, ClinicalError> {
        let Some(r) = lock(&self.referrals)
            .get(&id)
            .filter(|r| r.org == source.org())
            .cloned()
        else {
            return Ok(None);
        };
        let consent = lock(&self.consents).get(&r.consent).map(|(_, c)| c.clone());
        Ok(consent.map(|c| (r, c)))
    }
}

/// Organizations and their settings.
#[derive(Default)]
pub(crate) struct FakeOrgs {
    /// Organizations by id.
    pub orgs: Mutex<HashMap<OrgId, OrgSettings>>,
}

impl FakeOrgs {
    /// Adds an organization with `settings`; its id.
    pub fn add(&self, settings: OrgSettings) -> OrgId {
        let id = OrgId::generate();
        lock(&self.orgs).insert(id, settings);
        id
    }
}

impl OrganizationRepository for FakeOrgs {
    async fn create(&self, _: NewOrganization) -> Result<Organization, TenancyError> {
        Err(TenancyError::SlugTaken)
    }

    async fn find_by_id(&self, id: OrgId) -> Result<Option<Organization>, TenancyError> {
        let settings = lock(&self.orgs).get(&id).copied();
        match settings {
            None => Ok(None),
            Some(settings) => Ok(Some(Organization {
                id,
                slug: OrgSlug::parse("test-org")?,
                name: OrgName::parse("Test")?,
                settings,
            })),
        }
    }

    async fn update_settings(
        &self,
        id: OrgId,
        settings: OrgSettings,
    ) -> Result<bool, TenancyError> {
        Ok(lock(&self.orgs)
            .get_mut(&id)
            .map(|stored| *stored = settings)
            .is_some())
    }

    async fn find_by_slug(&self, _: &OrgSlug) -> Result<Option<Organization>, TenancyError> {
        Ok(None)
    }
}

/// Medication histories: the reads made, with the access's organization.
#[derive(Default)]
pub(crate) struct FakeMedications {
    /// Reads, by organization of the access.
    pub reads: Mutex<Vec<OrgId>>,
}

impl MedicationRepository for FakeMedications {
    async fn patient_of(
        &self,
        _: &TenantContext,
        _: crate::medication::Entry,
    ) -> Result<Option<PatientId>, ClinicalError> {
        unused()
    }

    async fn add_medication(
        &self,
        _: &Access,
        _: PatientId,
        _: &MedicationDetails,
    ) -> Result<Option<crate::medication::Medication>, ClinicalError> {
        unused()
    }

    async fn add_side_effect(
        &self,
        _: &Access,
        _: PatientId,
        _: &SideEffectDetails,
    ) -> Result<Option<crate::medication::SideEffect>, ClinicalError> {
        unused()
    }

    async fn history(
        &self,
        access: &Access,
        _: PatientId,
    ) -> Result<Option<MedicationHistory>, ClinicalError> {
        lock(&self.reads).push(access.org());
        Ok(Some((Vec::new(), Vec::new())))
    }

    async fn timelines(&self, _: &Access) -> Result<Vec<Timeline>, ClinicalError> {
        unused()
    }
}

/// Local accounts: (active, roles) by user id.
#[derive(Default)]
pub(crate) struct FakeAccounts {
    /// Accounts by id.
    pub accounts: Mutex<HashMap<Uuid, (bool, RoleSet)>>,
}

impl AccountStore for FakeAccounts {
    async fn create(
        &self,
        _: &TenantContext,
        _: &Email,
        _: Option<String>,
        _: RoleSet,
    ) -> Result<Account, AuthError> {
        Err(AuthError::Forbidden)
    }

    async fn find_by_email(
        &self,
        _: &TenantContext,
        _: &Email,
    ) -> Result<Option<Account>, AuthError> {
        Ok(None)
    }

    async fn find_by_id(
        &self,
        ctx: &TenantContext,
        user: UserId,
    ) -> Result<Option<Account>, AuthError> {
        let found = lock(&self.accounts).get(&user.as_uuid()).copied();
        Ok(found.map(|(active, roles)| Account {
            id: user,
            org: ctx.org(),
            email: Email::parse("someone@example.org").unwrap_or_else(|| unreachable!()),
            password_hash: None,
            roles,
            active,
            login: LoginState::default(),
            mfa_enabled: false,
        }))
    }

    async fn swap_login_state(
        &self,
        _: &TenantContext,
        _: UserId,
        _: LoginState,
        _: LoginState,
    ) -> Result<bool, AuthError> {
        Ok(false)
    }

    async fn is_known_address(
        &self,
        _: &TenantContext,
        _: UserId,
        _: [u8; 32],
        _: OffsetDateTime,
    ) -> Result<bool, AuthError> {
        Ok(false)
    }

    async fn remember_address(
        &self,
        _: &TenantContext,
        _: UserId,
        _: [u8; 32],
        _: OffsetDateTime,
    ) -> Result<(), AuthError> {
        Ok(())
    }
}
