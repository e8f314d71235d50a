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
    CareRole, Demographics, PHI_FIELDS, Patient, PatientId, PatientLinks, PatientPage,
    PatientPatch, PatientQuery, PatientRepository, RelatedRead, Sex, Visibility,
};
use std::sync::Arc;

use carapace_phi_crypto::Phi;
use carapace_phi_crypto::envelope::DataKey;

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
        let mut keys = KeyVersions::new(&self.keys, ctx);
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let key = keys.get(r.key_version).await?;
            out.push(from_row(&key, r)?);
        }
        Ok(out)
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
            .all(tx)
            .await
            .map_err(storage_error)?;
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
    SEX, TABLE,
};

/// What the plaintext `reason` column holds now that reasons are encrypted.
const SEALED_REASON: &str = "[encrypted: see reason_sealed]";

/// The cross-organization presence marker of a patient id.
fn id_hash(id: PatientId) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(id.as_uuid().as_bytes()).to_vec()
}

fn integrity() -> ClinicalError {
    ClinicalError::Storage(fields::integrity())
}

fn date_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Blind index of a member id (exact match after normalising).
fn member_index(key: &DataKey, member_id: &str) -> Vec<u8> {
    crate::sealed::blind_index(key, TABLE, &MEMBER_ID_INDEX, &[member_id])
}

/// Blind index of (family name, birth date).
fn name_dob_index(key: &DataKey, family_name: &str, birth_date: Date) -> Vec<u8> {
    crate::sealed::blind_index(
        key,
        TABLE,
        &NAME_DOB_INDEX,
        &[family_name, &date_text(birth_date)],
    )
}

/// Field storage lives here and in [`from_row`] only: every PHI column is
/// encrypted, bound to its org, table, column and row.
fn to_row(
    key: &DataKey,
    org: OrgId,
    id: PatientId,
    d: &Demographics,
    created: OffsetDateTime,
    updated: OffsetDateTime,
) -> Result<row::ActiveModel, ClinicalError> {
    let sealer = Sealer::new(key, org, TABLE, id.as_uuid());
    let seal = |column: &str, plain: &str| sealer.seal(column, plain);
    let opt = |column: &str, v: &Option<Phi<String>>| {
        v.as_ref().map(|v| seal(column, v.expose_phi())).transpose()
    };
    let birth_date = *d.birth_date.expose_phi();
    Ok(row::ActiveModel {
        org_id: Set(org.as_uuid()),
        id: Set(id.as_uuid()),
        key_version: Set(i32::try_from(key.version()).unwrap_or(i32::MAX)),
        given_name: Set(seal(GIVEN_NAME, d.given_name.expose_phi())?),
        family_name: Set(seal(FAMILY_NAME, d.family_name.expose_phi())?),
        birth_date: Set(seal(BIRTH_DATE, &date_text(birth_date))?),
        member_id: Set(opt(MEMBER_ID, &d.member_id)?),
        phone: Set(opt(PHONE, &d.phone)?),
        email: Set(opt(EMAIL, &d.email)?),
        sex: Set(d
            .sex
            .as_ref()
            .map(|v| seal(SEX, v.expose_phi().as_str()))
            .transpose()?),
        member_id_idx: Set(d
            .member_id
            .as_ref()
            .map(|m| member_index(key, m.expose_phi()))),
        name_dob_idx: Set(name_dob_index(key, d.family_name.expose_phi(), birth_date)),
        created_at: Set(created),
        updated_at: Set(updated),
        // Linking is its own operation; updates leave it alone.
        account_subject: NotSet,
    })
}

fn from_row(key: &DataKey, r: row::Model) -> Result<Patient, ClinicalError> {
    let (org, id) = (r.org_id, r.id);
    let sealer = Sealer::new(key, org, TABLE, id);
    let text = |column: &str, v: &[u8]| sealer.open(column, v).map(Phi::new);
    let opt = |column: &str, v: &Option<Vec<u8>>| v.as_deref().map(|v| text(column, v)).transpose();
    let birth_date = sealer.open(BIRTH_DATE, &r.birth_date)?;
    let birth_date = Date::parse(&birth_date, format_description!("[year]-[month]-[day]"))
        .map_err(|_| integrity())?;
    Ok(Patient {
        id: PatientId::from_uuid(id),
        org: OrgId::from_uuid(org),
        demographics: Demographics {
            given_name: text(GIVEN_NAME, &r.given_name)?,
            family_name: text(FAMILY_NAME, &r.family_name)?,
            birth_date: Phi::new(birth_date),
            member_id: opt(MEMBER_ID, &r.member_id)?,
            phone: opt(PHONE, &r.phone)?,
            email: opt(EMAIL, &r.email)?,
            sex: r
                .sex
                .as_deref()
                .map(|v| {
                    sealer
                        .open(SEX, v)
                        .map_err(ClinicalError::from)
                        .and_then(|t| Sex::parse(&t).ok_or_else(integrity))
                        .map(Phi::new)
                })
                .transpose()?,
        },
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// Now, at the microsecond precision both databases store.
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}

async fn insert_assignment(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    id: PatientId,
    subject: &SubjectId,
    role: CareRole,
    now: OffsetDateTime,
) -> Result<(), StorageError> {
    let exists = care_assignment::Entity::find()
        .scoped(ctx)
        .filter(care_assignment::Column::PatientId.eq(id.as_uuid()))
        .filter(care_assignment::Column::Subject.eq(subject.as_str()))
        .one(tx)
        .await
        .map_err(storage_error)?;
    match exists {
        None => {
            care_assignment::Entity::insert(care_assignment::ActiveModel {
                org_id: Set(ctx.org().as_uuid()),
                patient_id: Set(id.as_uuid()),
                subject: Set(subject.as_str().to_owned()),
                created_at: Set(now),
                role: Set(role.as_str().to_owned()),
            })
            .exec_without_returning(tx)
            .await
            .map_err(storage_error)?;
        }
        Some(found) if found.role != role.as_str() => {
            let mut change: care_assignment::ActiveModel = found.into();
            change.role = Set(role.as_str().to_owned());
            change.update(tx).await.map_err(storage_error)?;
        }
        Some(_) => {}
    }
    Ok(())
}

fn scoped(ctx: &TenantContext) -> sea_orm::Select<row::Entity> {
    row::Entity::find().live(ctx)
}

/// The audit event of `action` on patient `id`.
fn event(access: &Access, action: &str, id: Option<PatientId>, outcome: Outcome) -> AuditEvent {
    crate::repo::event(access, action, "patient", id.map(|i| i.as_uuid()), outcome)
}

/// The audit events of a miss: `action` on `id` not found in `access`'s
/// organization, and a cross-tenant attempt when the id is another
/// organization's. The lookup runs either way (the id-hash table holds
/// every organization's ids and nothing else), so both outcomes cost the
/// same statements; only the number of event rows differs.
async fn miss_events(
    tx: &DatabaseTransaction,
    access: &Access,
    id: PatientId,
    action: &str,
) -> Result<Vec<AuditEvent>, StorageError> {
    let elsewhere = patient_id_hash::Entity::find_by_id(id_hash(id))
        .one(tx)
        .await
        .map_err(storage_error)?
        .is_some();
    let mut events = vec![event(access, action, Some(id), Outcome::NotFound)];
    if elsewhere {
        events.push(
            access
                .event(
                    "security.cross_tenant_attempt",
                    "security",
                    None,
                    Outcome::Denied,
                )
                .with_detail(format!("patient {id}")),
        );
    }
    Ok(events)
}

/// What a related read found, before decryption.
enum Related {
    Missing,
    Refused(PatientLinks),
    Read(Box<row::Model>),
}

/// Runs a patient `select` in `tx`: the row, and the two relationship
/// flags when the statement asked for them.
async fn select_row(
    tx: &DatabaseTransaction,
    select: sea_orm::Statement,
) -> Result<Option<(row::Model, Option<(bool, bool)>)>, StorageError> {
    use sea_orm::{ConnectionTrait as _, FromQueryResult as _};
    let Some(found) = tx.query_one_raw(select).await.map_err(storage_error)? else {
        return Ok(None);
    };
    let r = row::Model::from_query_result(&found, "").map_err(storage_error)?;
    let relations = match (
        found.try_get::<bool>("", "rel_care_team"),
        found.try_get::<bool>("", "rel_break_glass"),
    ) {
        (Ok(care_team), Ok(break_glass)) => Some((care_team, break_glass)),
        _ => None,
    };
    Ok(Some((r, relations)))
}

impl PatientRepository for SeaPatients {
    async fn create(
        &self,
        access: &Access,
        d: &Demographics,
        care_team: Option<&SubjectId>,
    ) -> Result<Patient, ClinicalError> {
        let ctx = access.tenant();
        // The key first, in its own committed transaction: a key is never
        // used before it is stored.
        let key = self.keys.current(ctx).await?;
        let now = now();
        let id = PatientId::generate();
        let mut row = to_row(&key, ctx.org(), id, d, now, now)?;
        row.account_subject = Set(None);
        let (unit_access, unit_ctx) = (access.clone(), ctx.clone());
        let care_team = care_team.cloned();
        crate::repo::grouped(&self.db, ctx.org(), move |tx| {
            let (row, access, ctx) = (row.clone(), unit_access.clone(), unit_ctx.clone());
            let care_team = care_team.clone();
            Box::pin(async move {
                row::Entity::insert(row)
                    .exec_without_returning(tx)
                    .await
                    .map_err(storage_error)?;
                patient_id_hash::Entity::insert(patient_id_hash::ActiveModel {
                    hash: Set(id_hash(id)),
                })
                .exec_without_returning(tx)
                .await
                .map_err(storage_error)?;
                if let Some(subject) = &care_team {
                    insert_assignment(tx, &ctx, id, subject, CareRole::Primary, now).await?;
                }
                let written = event(&access, "patient.create", Some(id), Outcome::Allowed)
                    .with_phi_fields(&PHI_FIELDS);
                Ok(((), vec![written]))
            })
        })
        .await?;
        Ok(Patient {
            id,
            org: ctx.org(),
            demographics: d.clone(),
            created_at: now,
            updated_at: now,
        })
    }

    async fn get(&self, access: &Access, id: PatientId) -> Result<Option<Patient>, ClinicalError> {
        let ctx = access.tenant();
        let select = scoped(ctx)
            .filter(row::Column::Id.eq(id.as_uuid()))
            .build(self.db.conn().get_database_backend());
        let unit_access = access.clone();
        let found = crate::repo::grouped(&self.db, ctx.org(), move |tx| {
            let (select, access) = (select.clone(), unit_access.clone());
            Box::pin(async move {
                let found = select_row(tx, select).await?;
                let read = match found {
                    Some(_) => event(&access, "patient.read", Some(id), Outcome::Allowed)
                        .with_phi_fields(&PHI_FIELDS),
                    None => event(&access, "patient.read", Some(id), Outcome::NotFound),
                };
                Ok((found.map(|(r, _)| r), vec![read]))
            })
        })
        .await?;
        match found {
            Some(r) => Ok(self.decrypt_all(ctx, vec![r]).await?.pop()),
            None => Ok(None),
        }
    }

    async fn read_related<D>(
        &self,
        access: &Access,
        id: PatientId,
        subject: &SubjectId,
        now: OffsetDateTime,
        decide: D,
    ) -> Result<RelatedRead, ClinicalError>
    where
        D: Fn(PatientLinks) -> bool + Send + Sync + 'static,
    {
        let ctx = access.tenant();
        let org = ctx.org().as_uuid();
        let care_team = care_assignment::Entity::find()
            .select_only()
            .expr(Expr::val(1))
            .in_org(org)
            .filter(care_assignment::Column::PatientId.eq(id.as_uuid()))
            .filter(care_assignment::Column::Subject.eq(subject.as_str()))
            .into_query();
        let glass = break_glass::Entity::find()
            .select_only()
            .expr(Expr::val(1))
            .in_org(org)
            .filter(break_glass::Column::PatientId.eq(id.as_uuid()))
            .filter(break_glass::Column::Subject.eq(subject.as_str()))
            .filter(break_glass::Column::ExpiresAt.gt(now))
            .into_query();
        // The row and both relationships in one statement.
        let select = scoped(ctx)
            .filter(row::Column::Id.eq(id.as_uuid()))
            .expr_as(Expr::exists(care_team), "rel_care_team")
            .expr_as(Expr::exists(glass), "rel_break_glass")
            .build(self.db.conn().get_database_backend());
        let subject = subject.clone();
        let unit_access = access.clone();
        let decide = Arc::new(decide);
        // Relationship, decision, audit event and row in one transaction.
        let read = crate::repo::grouped(&self.db, ctx.org(), move |tx| {
            let (select, access) = (select.clone(), unit_access.clone());
            let (subject, decide) = (subject.clone(), decide.clone());
            Box::pin(async move {
                let Some((r, relations)) = select_row(tx, select).await? else {
                    let missed = miss_events(tx, &access, id, "patient.read").await?;
                    return Ok((Related::Missing, missed));
                };
                let (care_team, break_glass) = relations
                    .ok_or_else(|| StorageError::Internal("relationship columns missing".into()))?;
                let links = PatientLinks {
                    care_team,
                    break_glass,
                    own_record: r.account_subject.as_deref() == Some(subject.as_str()),
                };
                if !decide(links) {
                    let refused = event(&access, "patient.read", Some(id), Outcome::Denied);
                    return Ok((Related::Refused(links), vec![refused]));
                }
                let read = event(&access, "patient.read", Some(id), Outcome::Allowed)
                    .with_phi_fields(&PHI_FIELDS);
                Ok((Related::Read(Box::new(r)), vec![read]))
            })
        })
        .await?;
        match read {
            Related::Missing => Ok(RelatedRead::NotFound),
            Related::Refused(links) => Ok(RelatedRead::Denied(links)),
            Related::Read(r) => match self.decrypt_all(ctx, vec![*r]).await?.pop() {
                Some(p) => Ok(RelatedRead::Found(p)),
                None => Ok(RelatedRead::NotFound),
            },
        }
    }

    async fn update(
        &self,
        access: &Access,
        id: PatientId,
        patch: &PatientPatch,
    ) -> Result<Option<Patient>, ClinicalError> {
        let ctx = access.tenant();
        let key = self.keys.current(ctx).await?;
        let tx = self.db.begin_tenant(ctx).await?;
        let mut query = scoped(ctx).filter(row::Column::Id.eq(id.as_uuid()));
        if self.db.backend() == Backend::Postgres {
            query = query.lock_exclusive();
        }
        let Some(current) = query.one(&tx).await.map_err(storage_error)? else {
            let missing = event(access, "patient.update", Some(id), Outcome::NotFound);
            crate::audit::commit_with(tx, &[missing]).await?;
            return Ok(None);
        };
        // Usually the row is under the current key; an older version is
        // fetched (and cached) only after a rotation.
        let mut patient = if i64::from(current.key_version) == i64::from(key.version()) {
            from_row(&key, current)?
        } else {
            let Some(p) = self.decrypt_all(ctx, vec![current]).await?.pop() else {
                return Ok(None);
            };
            p
        };
        patch.apply(&mut patient.demographics);
        patient.updated_at = now();
        // Re-encrypted whole, under the current key.
        to_row(
            &key,
            patient.org,
            patient.id,
            &patient.demographics,
            patient.created_at,
            patient.updated_at,
        )?
        .update(&tx)
        .await
        .map_err(storage_error)?;
        let changed = event(access, "patient.update", Some(id), Outcome::Allowed)
            .with_phi_fields(&patch.fields());
        crate::audit::commit_with(tx, &[changed]).await?;
        Ok(Some(patient))
    }

    async fn delete(&self, access: &Access, id: PatientId) -> Result<bool, ClinicalError> {
        let ctx = access.tenant();
        let tx = self.db.begin_tenant(ctx).await?;
        let done = row::Entity::delete_many()
            .scoped(ctx)
            .filter(row::Column::Id.eq(id.as_uuid()))
            .exec(&tx)
            .await
            .map_err(storage_error)?;
        if done.rows_affected > 0 {
            patient_id_hash::Entity::delete_by_id(id_hash(id))
                .exec(&tx)
                .await
                .map_err(storage_error)?;
        }
        let outcome = if done.rows_affected > 0 {
            Outcome::Allowed
        } else {
            Outcome::NotFound
        };
        crate::audit::commit_with(tx, &[event(access, "patient.delete", Some(id), outcome)])
            .await?;
        Ok(done.rows_affected > 0)
    }

    async fn links(
        &self,
        ctx: &TenantContext,
        id: PatientId,
        subject: &SubjectId,
        now: OffsetDateTime,
    ) -> Result<Option<PatientLinks>, ClinicalError> {
        let tx = self.db.begin_tenant_read(ctx).await?;
        let Some(patient) = patient_row(&tx, ctx, id).await? else {
            return Ok(None);
        };
        let org = ctx.org().as_uuid();
        let care_team = care_assignment::Entity::find()
            .in_org(org)
            .filter(care_assignment::Column::PatientId.eq(id.as_uuid()))
            .filter(care_assignment::Column::Subject.eq(subject.as_str()))
            .one(&tx)
            .await
            .map_err(storage_error)?
            .is_some();
        let break_glass = break_glass::Entity::find()
            .in_org(org)
            .filter(break_glass::Column::PatientId.eq(id.as_uuid()))
            .filter(break_glass::Column::Subject.eq(subject.as_str()))
            .filter(break_glass::Column::ExpiresAt.gt(now))
            .one(&tx)
            .await
            .map_err(storage_error)?
            .is_some();
        commit::<ClinicalError>(tx).await?;
        let own_record = patient.account_subject.as_deref() == Some(subject.as_str());
        Ok(Some(PatientLinks {
            care_team,
            break_glass,
            own_record,
        }))
    }

    async fn assign(
        &self,
        ctx: &TenantContext,
        id: PatientId,
        subject: &SubjectId,
        role: CareRole,
    ) -> Result<bool, ClinicalError> {
        let tx = self.db.begin_tenant(ctx).await?;
        if patient_row(&tx, ctx, id).await?.is_none() {
            return Ok(false);
        }
        insert_assignment(&tx, ctx, id, subject, role, now()).await?;
        commit::<ClinicalError>(tx).await?;
        Ok(true)
    }

    async fn care_team(
        &self,
        access: &Access,
        id: PatientId,
    ) -> Result<Option<Vec<(SubjectId, CareRole)>>, ClinicalError> {
        let ctx = access.tenant();
        let missing = || event(access, "patient.care_team", Some(id), Outcome::NotFound);
        let rows = on_patient(&self.db, ctx, id, missing, async |tx| {
            let rows = care_assignment::Entity::find()
                .scoped(ctx)
                .filter(care_assignment::Column::PatientId.eq(id.as_uuid()))
                .order_by_asc(care_assignment::Column::CreatedAt)
                .limit(500)
                .all(tx)
                .await
                .map_err(storage_error)?;
            let read = event(access, "patient.care_team", Some(id), Outcome::Allowed);
            Ok((rows, vec![read]))
        })
        .await?;
        let Some(rows) = rows else {
            return Ok(None);
        };
        rows.into_iter()
            .map(|r| {
                Ok((
                    SubjectId::parse(&r.subject).map_err(|_| integrity())?,
                    CareRole::parse(&r.role).ok_or_else(integrity)?,
                ))
            })
            .collect::<Result<Vec<_>, ClinicalError>>()
            .map(Some)
    }

    async fn break_glass(
        &self,
        access: &Access,
        id: PatientId,
        subject: &SubjectId,
        reason: &Phi<String>,
        until: OffsetDateTime,
    ) -> Result<bool, ClinicalError> {
        let ctx = access.tenant();
        // The key first (its own transaction), as for patient rows.
        let key = self.keys.current(ctx).await?;
        let missing = || event(access, "patient.break_glass", Some(id), Outcome::NotFound);
        let grant = uuid::Uuid::now_v7();
        let declared = on_patient(&self.db, ctx, id, missing, async |tx| {
            use crate::sealed::break_glass_grants::{REASON, TABLE};
            let sealed_reason =
                Sealer::new(&key, ctx.org(), TABLE, grant).seal(REASON, reason.expose_phi())?;
            break_glass::Entity::insert(break_glass::ActiveModel {
                org_id: Set(ctx.org().as_uuid()),
                id: Set(grant),
                patient_id: Set(id.as_uuid()),
                subject: Set(subject.as_str().to_owned()),
                reason: Set(SEALED_REASON.to_owned()),
                reason_sealed: Set(Some(sealed_reason)),
                expires_at: Set(until),
                created_at: Set(now()),
            })
            .exec_without_returning(tx)
            .await
            .map_err(storage_error)?;
            // The reason is PHI-adjacent free text: the event names the grant
            // (where the reason is kept), not the reason itself.
            let declared = event(access, "patient.break_glass", Some(id), Outcome::Allowed)
                .with_detail(format!("grant {grant} until {until}"));
            Ok(((), vec![declared]))
        })
        .await?;
        Ok(declared.is_some())
    }

    async fn record_miss(
        &self,
        access: &Access,
        id: PatientId,
        action: &str,
    ) -> Result<(), ClinicalError> {
        let (access, action) = (access.clone(), action.to_owned());
        crate::repo::grouped(&self.db, access.org(), move |tx| {
            let (access, action) = (access.clone(), action.clone());
            Box::pin(async move { Ok(((), miss_events(tx, &access, id, &action).await?)) })
        })
        .await?;
        Ok(())
    }

    async fn link_account(
        &self,
        ctx: &TenantContext,
        id: PatientId,
        account: Option<&SubjectId>,
    ) -> Result<bool, ClinicalError> {
        let tx = self.db.begin_tenant(ctx).await?;
        let done = row::Entity::update_many()
            .col_expr(
                row::Column::AccountSubject,
                Expr::value(account.map(|a| a.as_str().to_owned())),
            )
            .scoped(ctx)
            .filter(row::Column::Id.eq(id.as_uuid()))
            .exec(&tx)
            .await
            .map_err(storage_error)?;
        commit::<ClinicalError>(tx).await?;
        Ok(done.rows_affected == 1)
    }

    async fn list(&self, access: &Access, q: &PatientQuery) -> Result<PatientPage, ClinicalError> {
        let ctx = access.tenant();
        // Searching needs blind indexes, under every version a row may be
        // under (during a rotation, or before this process learns of one);
        // listing alone does not.
        let keys = match (&q.member_id, &q.name_dob) {
            (None, None) => Vec::new(),
            _ => self.keys.live(ctx).await?,
        };
        let member_idx = q.member_id.as_ref().map(|m| {
            keys.iter()
                .map(|k| member_index(k, m.expose_phi()))
                .collect::<Vec<_>>()
        });
        let name_dob_idx = q.name_dob.as_ref().map(|(n, d)| {
            keys.iter()
                .map(|k| name_dob_index(k, n.expose_phi(), *d.expose_phi()))
                .collect::<Vec<_>>()
        });
        let limit = usize::from(q.limit.get());
        let mut query = scoped(ctx);
        query = match &q.visibility {
            Visibility::Nothing => {
                return Ok(PatientPage {
                    items: Vec::new(),
                    next_after: None,
                });
            }
            Visibility::Organization => query,
            Visibility::CareTeamOf(subject) => {
                let org = ctx.org().as_uuid();
                let assigned = care_assignment::Entity::find()
                    .select_only()
                    .column(care_assignment::Column::PatientId)
                    .in_org(org)
                    .filter(care_assignment::Column::Subject.eq(subject.as_str()))
                    .into_query();
                let glass = break_glass::Entity::find()
                    .select_only()
                    .column(break_glass::Column::PatientId)
                    .in_org(org)
                    .filter(break_glass::Column::Subject.eq(subject.as_str()))
                    .filter(break_glass::Column::ExpiresAt.gt(OffsetDateTime::now_utc()))
                    .into_query();
                query.filter(
                    Condition::any()
                        .add(row::Column::Id.in_subquery(assigned))
                        .add(row::Column::Id.in_subquery(glass)),
                )
            }
            Visibility::OwnRecordOf(subject) => {
                query.filter(row::Column::AccountSubject.eq(subject.as_str()))
            }
        };
        if let Some(idx) = name_dob_idx {
            query = query.filter(row::Column::NameDobIdx.is_in(idx));
        }
        if let Some(idx) = member_idx {
            query = query.filter(row::Column::MemberIdIdx.is_in(idx));
        }
        if let Some(after) = q.after {
            query = query.filter(row::Column::Id.gt(after.as_uuid()));
        }
        let select = query
            .order_by_asc(row::Column::Id)
            .limit(u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1))
            .build(self.db.conn().get_database_backend());
        let action = if q.member_id.is_some() || q.name_dob.is_some() {
            "patient.search"
        } else {
            "patient.list"
        };
        let unit_access = access.clone();
        let rows = crate::repo::grouped(&self.db, ctx.org(), move |tx| {
            let (select, access) = (select.clone(), unit_access.clone());
            Box::pin(async move {
                use sea_orm::{ConnectionTrait as _, FromQueryResult as _};
                let rows = tx
                    .query_all_raw(select)
                    .await
                    .map_err(storage_error)?
                    .iter()
                    .map(|r| row::Model::from_query_result(r, ""))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(storage_error)?;
                // One event per patient shown: the accounting of
                // disclosures of each patient is complete.
                let mut shown: Vec<AuditEvent> = rows
                    .iter()
                    .take(limit)
                    .map(|r| {
                        event(
                            &access,
                            action,
                            Some(PatientId::from_uuid(r.id)),
                            Outcome::Allowed,
                        )
                        .with_phi_fields(&PHI_FIELDS)
                    })
                    .collect();
                if shown.is_empty() {
                    shown.push(event(&access, action, None, Outcome::NotFound));
                }
                Ok((rows, shown))
            })
        })
        .await?;
        let mut items = self.decrypt_all(ctx, rows).await?;
        let next_after = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|p| p.id)
        } else {
            None
        };
        Ok(PatientPage { items, next_after })
    }
}
