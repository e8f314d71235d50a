//! Patient storage over SeaORM. Every call runs in one tenant transaction
//! ([`Database::begin_tenant`]) and also filters on `org_id`, so isolation
//! holds on SQLite (no row-level security) and twice over on PostgreSQL.
//!
//! Every PHI column is encrypted with the organization's current data key
//! (AES-256-GCM, bound to org, table, column and row) in [`to_row`] and
//! decrypted in [`from_row`]; nothing above the repository sees ciphertext,
//! and nothing below it sees plaintext. `member_id` and (family name, birth
//! date) also carry blind indexes for exact-match search.

use carapace_audit::{Access, AuditEvent, Outcome};
use carapace_clinical::ClinicalError;
use carapace_clinical::patient::{
    CareRole, Demographics, PHI_FIELDS, Patient, PatientAdmission, PatientId, PatientLinks,
    PatientPage, PatientPatch, PatientQuery, PatientRepository, RelatedRead, Sex, Version,
    Visibility,
};
use std::sync::Arc;

use carapace_phi_crypto::Phi;
use carapace_phi_crypto::envelope::DataKey;

use crate::db::Fetch as _;
use crate::fields::{self, KeyVersions};
use crate::repo::{Sealer, commit, on_patient, patient_row};
use crate::scope::{Live as _, Scoped as _};
use carapace_tenancy::{OrgId, StorageError, SubjectId, TenantContext};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use sea_orm::{Condition, QueryTrait as _};
use time::macros::format_description;
use time::{Date, OffsetDateTime};

use crate::db::{Backend, Database, storage_error};
use crate::entity::patient as row;
use crate::entity::{break_glass, care_assignment, patient_id_hash};
use crate::keys::KeyRing;

/// [`PatientRepository`] over the `patients` table.
#[derive(Clone, Debug)]
pub struct SeaPatients {
    db: Database,
    keys: Arc<KeyRing>,
}

impl SeaPatients {
    /// Patients in `db`, their PHI encrypted with the organizations' keys.
    pub fn new(db: Database, keys: Arc<KeyRing>) -> Self {
        Self { db, keys }
    }

    /// Decrypts rows, fetching each key version once.
    async fn decrypt_all(
        &self,
        ctx: &TenantContext,
        rows: Vec<row::Model>,
    ) -> Result<Vec<Patient>, ClinicalError> {
        KeyVersions::new(&self.keys, ctx)
            .open_each(rows, |r| r.key_version, from_row)
            .await
    }

    /// One patient, read and decrypted in `tx` (the caller records the
    /// access); `None` if there is no such patient.
    pub(crate) async fn read_in(
        &self,
        tx: &DatabaseTransaction,
        ctx: &TenantContext,
        id: PatientId,
    ) -> Result<Option<Patient>, ClinicalError> {
        let Some(r) = patient_row(tx, ctx, id).await? else {
            return Ok(None);
        };
        Ok(self.decrypt_all(ctx, vec![r]).await?.pop())
    }

    /// Every patient's date of birth and sex (research aggregates), read
    /// in `tx` (the caller records the access); at most 100 000.
    pub(crate) async fn birth_dates_and_sexes(
        &self,
        tx: &DatabaseTransaction,
        ctx: &TenantContext,
    ) -> Result<Vec<(Date, Sex)>, ClinicalError> {
        let rows = scoped(ctx)
            .order_by_asc(row::Column::Id)
            .limit(100_000)
            .all_in(tx)
            .await?;
        Ok(self
            .decrypt_all(ctx, rows)
            .await?
            .into_iter()
            .map(|p| {
                let d = &p.demographics;
                (
                    *d.birth_date.expose_phi(),
                    d.sex.as_ref().map_or(Sex::Unknown, |s| *s.expose_phi()),
                )
            })
            .collect())
    }

    /// The patient's initials (calendar feeds that show them).
    pub(crate) async fn initials(
        &self,
        tx: &DatabaseTransaction,
        ctx: &TenantContext,
        id: PatientId,
    ) -> Result<Option<String>, ClinicalError> {
        Ok(self.read_in(tx, ctx, id).await?.map(|p| {
            carapace_clinical::appointment::calendar::initials(
                p.demographics.given_name.expose_phi(),
                p.demographics.family_name.expose_phi(),
            )
        }))
    }

    /// The patient's e-mail and phone (reminder delivery).
    pub(crate) async fn contact(
        &self,
        tx: &DatabaseTransaction,
        ctx: &TenantContext,
        id: PatientId,
    ) -> Result<Option<(Option<Phi<String>>, Option<Phi<String>>)>, ClinicalError> {
        Ok(self
            .read_in(tx, ctx, id)
            .await?
            .map(|p| (p.demographics.email, p.demographics.phone)))
    }
}

use crate::sealed::patients::{
    BIRTH_DATE, EMAIL, FAMILY_NAME, GIVEN_NAME, MEMBER_ID, MEMBER_ID_INDEX, NAME_DOB_INDEX, PHONE,
    PHONE_INDEX, SEX, TABLE,
};

mod codec;
pub(crate) use codec::phone_index;
use codec::{
    SEALED_REASON, from_row, id_hash, integrity, member_index, name_dob_index, now, to_row,
};

mod care;
use care::{insert_assignment, new_assignment};

mod query;
use query::scoped;
