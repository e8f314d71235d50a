//! Medication statements and side-effect reports over SeaORM: every
//! clinical field sealed for its organization, table, column and row.

use std::collections::BTreeMap;
use std::sync::Arc;

use carapace_audit::{Access, AuditEvent, Outcome};
use carapace_clinical::ClinicalError;
use carapace_clinical::medication::{
    Entry, MEDICATION_FIELDS, Medication, MedicationDetails, MedicationHistory, MedicationId,
    MedicationRepository, SIDE_EFFECT_FIELDS, Severity, SideEffect, SideEffectDetails,
    SideEffectId, Timeline, normalise,
};
use carapace_clinical::patient::PatientId;
use carapace_phi_crypto::Phi;
use carapace_phi_crypto::envelope::DataKey;
use carapace_tenancy::TenantContext;
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait as _, DatabaseTransaction, EntityTrait as _, QueryFilter as _, QueryOrder as _,
    QuerySelect as _,
};
use time::Date;
use time::macros::format_description;
use uuid::Uuid;

use crate::db::Database;
use crate::db::{Fetch as _, Run as _};
use crate::entity::{medication as med, side_effect as effect};
use crate::fields::{self, KeyVersions};
use crate::keys::KeyRing;
use crate::repo::{self, Sealer, on_patient};
use crate::scope::Live as _;

/// Most records of each kind one history or aggregation reads per patient.
const HISTORY_MAX: u64 = 1000;
/// Most records of each kind one organization aggregate reads.
const AGGREGATE_MAX: u64 = 100_000;

/// [`MedicationRepository`] over `medication_statements` and `side_effects`.
#[derive(Clone, Debug)]
pub struct SeaMedications {
    db: Database,
    keys: Arc<KeyRing>,
}

impl SeaMedications {
    /// Records in `db`, sealed with the organizations' keys.
    pub fn new(db: Database, keys: Arc<KeyRing>) -> Self {
        Self { db, keys }
    }
}

fn date_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn parse_date(s: &str) -> Result<Date, ClinicalError> {
    Date::parse(s, format_description!("[year]-[month]-[day]"))
        .map_err(|_| ClinicalError::Storage(fields::integrity()))
}

use crate::sealed::medication_statements::{
    self as meds, DOSE, DRUG_NAME, SCHEDULE, STARTED_ON, STOPPED_ON,
};
use crate::sealed::side_effects::{self as effects, ONSET_ON, SEVERITY, SYMPTOM};
const MEDS: &str = meds::TABLE;
const EFFECTS: &str = effects::TABLE;

fn open_medication(key: &DataKey, r: &med::Model) -> Result<Medication, ClinicalError> {
    let sealer = Sealer::new(key, r.org_id, MEDS, r.id);
    let o = |column: &str, v: &[u8]| sealer.open(column, v);
    Ok(Medication {
        id: MedicationId::from_uuid(r.id),
        patient: PatientId::from_uuid(r.patient_id),
        details: MedicationDetails {
            drug_name: Phi::new(o(DRUG_NAME, &r.drug_name)?),
            dose: Phi::new(o(DOSE, &r.dose)?),
            schedule: Phi::new(o(SCHEDULE, &r.schedule)?),
            started_on: Phi::new(parse_date(&o(STARTED_ON, &r.started_on)?)?),
            stopped_on: match &r.stopped_on {
                Some(v) => Some(Phi::new(parse_date(&o(STOPPED_ON, v)?)?)),
                None => None,
            },
        },
        created_at: r.created_at,
    })
}

fn open_effect(key: &DataKey, r: &effect::Model) -> Result<SideEffect, ClinicalError> {
    let sealer = Sealer::new(key, r.org_id, EFFECTS, r.id);
    let o = |column: &str, v: &[u8]| sealer.open(column, v);
    Ok(SideEffect {
        id: SideEffectId::from_uuid(r.id),
        patient: PatientId::from_uuid(r.patient_id),
        details: SideEffectDetails {
            symptom: Phi::new(o(SYMPTOM, &r.symptom)?),
            severity: Phi::new(
                Severity::parse(&o(SEVERITY, &r.severity)?)
                    .ok_or(ClinicalError::Storage(fields::integrity()))?,
            ),
            onset_on: Phi::new(parse_date(&o(ONSET_ON, &r.onset_on)?)?),
        },
        created_at: r.created_at,
    })
}

fn event(access: &Access, action: &str, patient: PatientId, outcome: Outcome) -> AuditEvent {
    repo::event(access, action, "patient", Some(patient), outcome)
}

impl SeaMedications {
    async fn rows(
        &self,
        tx: &DatabaseTransaction,
        ctx: &TenantContext,
        patient: Option<PatientId>,
        max: u64,
    ) -> Result<(Vec<med::Model>, Vec<effect::Model>), ClinicalError> {
        let mut m = med::Entity::find().live(ctx);
        let mut e = effect::Entity::find().live(ctx);
        if let Some(p) = patient {
            m = m.filter(med::Column::PatientId.eq(p.as_uuid()));
            e = e.filter(effect::Column::PatientId.eq(p.as_uuid()));
        }
        let meds = m
            .order_by_asc(med::Column::Id)
            .limit(max)
            .all_in(tx)
            .await?;
        let effects = e
            .order_by_asc(effect::Column::Id)
            .limit(max)
            .all_in(tx)
            .await?;
        Ok((meds, effects))
    }

    async fn open_all(
        &self,
        ctx: &TenantContext,
        meds: &[med::Model],
        effects: &[effect::Model],
    ) -> Result<(Vec<Medication>, Vec<SideEffect>), ClinicalError> {
        let mut keys = KeyVersions::new(&self.keys, ctx);
        let m = keys
            .open_each(meds, |r| r.key_version, open_medication)
            .await?;
        let e = keys
            .open_each(effects, |r| r.key_version, open_effect)
            .await?;
        Ok((m, e))
    }
}

impl MedicationRepository for SeaMedications {
    async fn add_medication(
        &self,
        access: &Access,
        patient: PatientId,
        d: &MedicationDetails,
    ) -> Result<Option<Medication>, ClinicalError> {
        let ctx = access.tenant();
        let key = self.keys.current(ctx).await?;
        let (org, id) = (ctx.org().as_uuid(), Uuid::now_v7());
        let sealer = Sealer::new(&key, org, MEDS, id);
        let s = |column: &str, v: &str| sealer.seal(column, v);
        let created_at = carapace_audit::event::now_micros();
        let row = med::ActiveModel {
            org_id: Set(org),
            id: Set(id),
            patient_id: Set(patient.as_uuid()),
            key_version: Set(i32::try_from(key.version()).unwrap_or(i32::MAX)),
            drug_name: Set(s(DRUG_NAME, d.drug_name.expose_phi())?),
            dose: Set(s(DOSE, d.dose.expose_phi())?),
            schedule: Set(s(SCHEDULE, d.schedule.expose_phi())?),
            started_on: Set(s(STARTED_ON, &date_text(*d.started_on.expose_phi()))?),
            stopped_on: Set(d
                .stopped_on
                .as_ref()
                .map(|v| s(STOPPED_ON, &date_text(*v.expose_phi())))
                .transpose()?),
            created_at: Set(created_at),
        };
        let missing = || event(access, "medication.create", patient, Outcome::NotFound);
        let made = on_patient(&self.db, ctx, patient, missing, async |tx| {
            med::Entity::insert(row).run(tx).await?;
            let made = event(access, "medication.create", patient, Outcome::Allowed)
                .with_phi_fields(&MEDICATION_FIELDS)
                .with_detail(format!("medication {id}"));
            Ok(((), vec![made]))
        })
        .await?;
        Ok(made.map(|()| Medication {
            id: MedicationId::from_uuid(id),
            patient,
            details: d.clone(),
            created_at,
        }))
    }

    async fn add_side_effect(
        &self,
        access: &Access,
        patient: PatientId,
        d: &SideEffectDetails,
    ) -> Result<Option<SideEffect>, ClinicalError> {
        let ctx = access.tenant();
        let key = self.keys.current(ctx).await?;
        let (org, id) = (ctx.org().as_uuid(), Uuid::now_v7());
        let sealer = Sealer::new(&key, org, EFFECTS, id);
        let s = |column: &str, v: &str| sealer.seal(column, v);
        let created_at = carapace_audit::event::now_micros();
        let row = effect::ActiveModel {
            org_id: Set(org),
            id: Set(id),
            patient_id: Set(patient.as_uuid()),
            key_version: Set(i32::try_from(key.version()).unwrap_or(i32::MAX)),
            symptom: Set(s(SYMPTOM, d.symptom.expose_phi())?),
            severity: Set(s(SEVERITY, d.severity.expose_phi().as_str())?),
            onset_on: Set(s(ONSET_ON, &date_text(*d.onset_on.expose_phi()))?),
            created_at: Set(created_at),
        };
        let missing = || event(access, "side_effect.create", patient, Outcome::NotFound);
        let made = on_patient(&self.db, ctx, patient, missing, async |tx| {
            effect::Entity::insert(row).run(tx).await?;
            let made = event(access, "side_effect.create", patient, Outcome::Allowed)
                .with_phi_fields(&SIDE_EFFECT_FIELDS)
                .with_detail(format!("side effect {id}"));
            Ok(((), vec![made]))
        })
        .await?;
        Ok(made.map(|()| SideEffect {
            id: SideEffectId::from_uuid(id),
            patient,
            details: d.clone(),
            created_at,
        }))
    }

    async fn history(
        &self,
        access: &Access,
        patient: PatientId,
    ) -> Result<Option<MedicationHistory>, ClinicalError> {
        let ctx = access.tenant();
        let missing = || event(access, "medication.read", patient, Outcome::NotFound);
        let found = on_patient(&self.db, ctx, patient, missing, async |tx| {
            let (meds, effects) = self.rows(tx, ctx, Some(patient), HISTORY_MAX).await?;
            let mut read_fields: Vec<&str> = MEDICATION_FIELDS.to_vec();
            read_fields.extend(SIDE_EFFECT_FIELDS);
            let read = event(access, "medication.read", patient, Outcome::Allowed)
                .with_phi_fields(&read_fields)
                .with_detail(format!(
                    "{} medications, {} side effects",
                    meds.len(),
                    effects.len()
                ));
            Ok(((meds, effects), vec![read]))
        })
        .await?;
        match found {
            Some((meds, effects)) => Ok(Some(self.open_all(ctx, &meds, &effects).await?)),
            None => Ok(None),
        }
    }

    async fn patient_of(
        &self,
        ctx: &TenantContext,
        entry: Entry,
    ) -> Result<Option<PatientId>, ClinicalError> {
        let tx = self.db.begin_tenant_read(ctx).await?;
        let found: Option<Uuid> = match entry {
            Entry::Medication(id) => {
                med::Entity::find()
                    .live(ctx)
                    .select_only()
                    .column(med::Column::PatientId)
                    .filter(med::Column::Id.eq(id.as_uuid()))
                    .into_tuple()
                    .one_in(&tx)
                    .await?
            }
            Entry::SideEffect(id) => {
                effect::Entity::find()
                    .live(ctx)
                    .select_only()
                    .column(effect::Column::PatientId)
                    .filter(effect::Column::Id.eq(id.as_uuid()))
                    .into_tuple()
                    .one_in(&tx)
                    .await?
            }
        };
        tx.commit().await.map_err(crate::db::storage_error)?;
        Ok(found.map(PatientId::from_uuid))
    }

    async fn timelines(&self, access: &Access) -> Result<Vec<Timeline>, ClinicalError> {
        let ctx = access.tenant();
        let tx = self.db.begin_tenant(ctx).await?;
        let (meds, effects) = self.rows(&tx, ctx, None, AGGREGATE_MAX).await?;
        let patients: std::collections::BTreeSet<Uuid> =
            meds.iter().map(|m| m.patient_id).collect();
        let read = access
            .event(
                "medication.aggregate",
                "organization",
                Some(ctx.org().to_string()),
                Outcome::Allowed,
            )
            .with_phi_fields(&["drug_name", "started_on", "symptom", "onset_on"])
            .with_detail(format!("{} patients with medications", patients.len()));
        crate::audit::commit_with(tx, &[read]).await?;
        self.by_patient(ctx, &meds, &effects).await
    }
}

impl SeaMedications {
    /// Every patient's timeline, read in `tx` (the caller records the
    /// access).
    pub(crate) async fn timelines_in(
        &self,
        tx: &DatabaseTransaction,
        ctx: &TenantContext,
    ) -> Result<Vec<Timeline>, ClinicalError> {
        let (meds, effects) = self.rows(tx, ctx, None, AGGREGATE_MAX).await?;
        self.by_patient(ctx, &meds, &effects).await
    }

    async fn by_patient(
        &self,
        ctx: &TenantContext,
        meds: &[med::Model],
        effects: &[effect::Model],
    ) -> Result<Vec<Timeline>, ClinicalError> {
        let (m, e) = self.open_all(ctx, meds, effects).await?;
        let mut by_patient: BTreeMap<Uuid, Timeline> = BTreeMap::new();
        for x in &m {
            by_patient
                .entry(x.patient.as_uuid())
                .or_default()
                .starts
                .push((
                    normalise(x.details.drug_name.expose_phi()),
                    *x.details.started_on.expose_phi(),
                ));
        }
        for x in &e {
            by_patient
                .entry(x.patient.as_uuid())
                .or_default()
                .onsets
                .push((
                    normalise(x.details.symptom.expose_phi()),
                    *x.details.onset_on.expose_phi(),
                ));
        }
        Ok(by_patient.into_values().collect())
    }
}
