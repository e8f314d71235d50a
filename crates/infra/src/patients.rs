//! Patient storage over SeaORM. Every call runs in one tenant transaction
//! ([`Database::begin_tenant`]) and also filters on `org_id`, so isolation
//! holds on SQLite (no row-level security) and twice over on PostgreSQL.
//!
//! Field storage is confined to [`to_row`] and [`from_row`]: PHI encryption
//! changes only these two functions and the column types.

use carapace_clinical::ClinicalError;
use carapace_clinical::patient::{
    Demographics, Patient, PatientId, PatientLinks, PatientPage, PatientPatch, PatientQuery,
    PatientRepository, Visibility,
};
use carapace_phi_crypto::Phi;
use carapace_tenancy::{OrgId, SubjectId, TenantContext};
use sea_orm::ActiveValue::{NotSet, Set};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use sea_orm::{Condition, QueryTrait as _};
use time::OffsetDateTime;

use crate::db::{Backend, Database, storage_error};
use crate::entity::patient as row;
use crate::entity::{break_glass, care_assignment};

/// [`PatientRepository`] over the `patients` table.
#[derive(Clone, Debug)]
pub struct SeaPatients {
    db: Database,
}

impl SeaPatients {
    /// Patients in `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn to_row(
    org: OrgId,
    id: PatientId,
    d: &Demographics,
    created: OffsetDateTime,
    updated: OffsetDateTime,
) -> row::ActiveModel {
    row::ActiveModel {
        org_id: Set(org.as_uuid()),
        id: Set(id.as_uuid()),
        given_name: Set(d.given_name.expose_phi().clone()),
        family_name: Set(d.family_name.expose_phi().clone()),
        birth_date: Set(*d.birth_date.expose_phi()),
        member_id: Set(d.member_id.as_ref().map(|v| v.expose_phi().clone())),
        phone: Set(d.phone.as_ref().map(|v| v.expose_phi().clone())),
        email: Set(d.email.as_ref().map(|v| v.expose_phi().clone())),
        created_at: Set(created),
        updated_at: Set(updated),
        // Linking is its own operation; updates leave it alone.
        account_subject: NotSet,
    }
}

fn from_row(r: row::Model) -> Patient {
    Patient {
        id: PatientId::from_uuid(r.id),
        org: OrgId::from_uuid(r.org_id),
        demographics: Demographics {
            given_name: Phi::new(r.given_name),
            family_name: Phi::new(r.family_name),
            birth_date: Phi::new(r.birth_date),
            member_id: r.member_id.map(Phi::new),
            phone: r.phone.map(Phi::new),
            email: r.email.map(Phi::new),
        },
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
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
    now: OffsetDateTime,
) -> Result<(), ClinicalError> {
    let exists = care_assignment::Entity::find()
        .filter(care_assignment::Column::OrgId.eq(ctx.org().as_uuid()))
        .filter(care_assignment::Column::PatientId.eq(id.as_uuid()))
        .filter(care_assignment::Column::Subject.eq(subject.as_str()))
        .one(tx)
        .await
        .map_err(storage_error)?;
    if exists.is_none() {
        care_assignment::Entity::insert(care_assignment::ActiveModel {
            org_id: Set(ctx.org().as_uuid()),
            patient_id: Set(id.as_uuid()),
            subject: Set(subject.as_str().to_owned()),
            created_at: Set(now),
        })
        .exec_without_returning(tx)
        .await
        .map_err(storage_error)?;
    }
    Ok(())
}

async fn exists(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    id: PatientId,
) -> Result<Option<row::Model>, ClinicalError> {
    scoped(ctx)
        .filter(row::Column::Id.eq(id.as_uuid()))
        .one(tx)
        .await
        .map_err(|e| storage_error(e).into())
}

fn scoped(ctx: &TenantContext) -> sea_orm::Select<row::Entity> {
    row::Entity::find().filter(row::Column::OrgId.eq(ctx.org().as_uuid()))
}

async fn commit(tx: DatabaseTransaction) -> Result<(), ClinicalError> {
    tx.commit().await.map_err(|e| storage_error(e).into())
}

impl PatientRepository for SeaPatients {
    async fn create(
        &self,
        ctx: &TenantContext,
        d: &Demographics,
        care_team: Option<&SubjectId>,
    ) -> Result<Patient, ClinicalError> {
        let tx = self.db.begin_tenant(ctx).await?;
        let now = now();
        let id = PatientId::generate();
        let mut row = to_row(ctx.org(), id, d, now, now);
        row.account_subject = Set(None);
        row::Entity::insert(row)
            .exec_without_returning(&tx)
            .await
            .map_err(storage_error)?;
        if let Some(subject) = care_team {
            insert_assignment(&tx, ctx, id, subject, now).await?;
        }
        commit(tx).await?;
        Ok(Patient {
            id,
            org: ctx.org(),
            demographics: d.clone(),
            created_at: now,
            updated_at: now,
        })
    }

    async fn get(
        &self,
        ctx: &TenantContext,
        id: PatientId,
    ) -> Result<Option<Patient>, ClinicalError> {
        let tx = self.db.begin_tenant(ctx).await?;
        let found = scoped(ctx)
            .filter(row::Column::Id.eq(id.as_uuid()))
            .one(&tx)
            .await
            .map_err(storage_error)?;
        commit(tx).await?;
        Ok(found.map(from_row))
    }

    async fn update(
        &self,
        ctx: &TenantContext,
        id: PatientId,
        patch: &PatientPatch,
    ) -> Result<Option<Patient>, ClinicalError> {
        let tx = self.db.begin_tenant(ctx).await?;
        let mut query = scoped(ctx).filter(row::Column::Id.eq(id.as_uuid()));
        if self.db.backend() == Backend::Postgres {
            query = query.lock_exclusive();
        }
        let Some(current) = query.one(&tx).await.map_err(storage_error)? else {
            return Ok(None);
        };
        let mut patient = from_row(current);
        patch.apply(&mut patient.demographics);
        patient.updated_at = now();
        to_row(
            patient.org,
            patient.id,
            &patient.demographics,
            patient.created_at,
            patient.updated_at,
        )
        .update(&tx)
        .await
        .map_err(storage_error)?;
        commit(tx).await?;
        Ok(Some(patient))
    }

    async fn delete(&self, ctx: &TenantContext, id: PatientId) -> Result<bool, ClinicalError> {
        let tx = self.db.begin_tenant(ctx).await?;
        let done = row::Entity::delete_many()
            .filter(row::Column::OrgId.eq(ctx.org().as_uuid()))
            .filter(row::Column::Id.eq(id.as_uuid()))
            .exec(&tx)
            .await
            .map_err(storage_error)?;
        commit(tx).await?;
        Ok(done.rows_affected > 0)
    }

    async fn links(
        &self,
        ctx: &TenantContext,
        id: PatientId,
        subject: &SubjectId,
        now: OffsetDateTime,
    ) -> Result<Option<PatientLinks>, ClinicalError> {
        let tx = self.db.begin_tenant(ctx).await?;
        let Some(patient) = exists(&tx, ctx, id).await? else {
            return Ok(None);
        };
        let org = ctx.org().as_uuid();
        let care_team = care_assignment::Entity::find()
            .filter(care_assignment::Column::OrgId.eq(org))
            .filter(care_assignment::Column::PatientId.eq(id.as_uuid()))
            .filter(care_assignment::Column::Subject.eq(subject.as_str()))
            .one(&tx)
            .await
            .map_err(storage_error)?
            .is_some();
        let break_glass = break_glass::Entity::find()
            .filter(break_glass::Column::OrgId.eq(org))
            .filter(break_glass::Column::PatientId.eq(id.as_uuid()))
            .filter(break_glass::Column::Subject.eq(subject.as_str()))
            .filter(break_glass::Column::ExpiresAt.gt(now))
            .one(&tx)
            .await
            .map_err(storage_error)?
            .is_some();
        commit(tx).await?;
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
    ) -> Result<bool, ClinicalError> {
        let tx = self.db.begin_tenant(ctx).await?;
        if exists(&tx, ctx, id).await?.is_none() {
            return Ok(false);
        }
        insert_assignment(&tx, ctx, id, subject, now()).await?;
        commit(tx).await?;
        Ok(true)
    }

    async fn break_glass(
        &self,
        ctx: &TenantContext,
        id: PatientId,
        subject: &SubjectId,
        reason: &Phi<String>,
        until: OffsetDateTime,
    ) -> Result<bool, ClinicalError> {
        let tx = self.db.begin_tenant(ctx).await?;
        if exists(&tx, ctx, id).await?.is_none() {
            return Ok(false);
        }
        break_glass::Entity::insert(break_glass::ActiveModel {
            org_id: Set(ctx.org().as_uuid()),
            id: Set(uuid::Uuid::now_v7()),
            patient_id: Set(id.as_uuid()),
            subject: Set(subject.as_str().to_owned()),
            reason: Set(reason.expose_phi().clone()),
            expires_at: Set(until),
            created_at: Set(now()),
        })
        .exec_without_returning(&tx)
        .await
        .map_err(storage_error)?;
        commit(tx).await?;
        Ok(true)
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
            .filter(row::Column::OrgId.eq(ctx.org().as_uuid()))
            .filter(row::Column::Id.eq(id.as_uuid()))
            .exec(&tx)
            .await
            .map_err(storage_error)?;
        commit(tx).await?;
        Ok(done.rows_affected == 1)
    }

    async fn list(
        &self,
        ctx: &TenantContext,
        q: &PatientQuery,
    ) -> Result<PatientPage, ClinicalError> {
        let tx = self.db.begin_tenant(ctx).await?;
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
                    .filter(care_assignment::Column::OrgId.eq(org))
                    .filter(care_assignment::Column::Subject.eq(subject.as_str()))
                    .into_query();
                let glass = break_glass::Entity::find()
                    .select_only()
                    .column(break_glass::Column::PatientId)
                    .filter(break_glass::Column::OrgId.eq(org))
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
        if let Some(member_id) = &q.member_id {
            query = query.filter(row::Column::MemberId.eq(member_id.expose_phi().as_str()));
        }
        if let Some(after) = q.after {
            query = query.filter(row::Column::Id.gt(after.as_uuid()));
        }
        let rows = query
            .order_by_asc(row::Column::Id)
            .limit(limit as u64 + 1)
            .all(&tx)
            .await
            .map_err(storage_error)?;
        commit(tx).await?;
        let mut items: Vec<Patient> = rows.into_iter().map(from_row).collect();
        let next_after = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|p| p.id)
        } else {
            None
        };
        Ok(PatientPage { items, next_after })
    }
}
