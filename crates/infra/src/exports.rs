//! [`ExportRepository`] over `bulk_exports` and `bulk_export_files`: files
//! sealed under the organization's current data key, bound to their row;
//! starting, downloading and deleting an export are audited.

use std::sync::Arc;

use carapace_audit::{Access, Outcome};
use carapace_auth::smart::ResourceType;
use carapace_clinical::ClinicalError;
use carapace_clinical::export::{
    ExportFile, ExportId, ExportJob, ExportRepository, ExportStatus, LEASE, NewExport, RUNNING_MAX,
    RUNNING_RETRY, standing,
};
use carapace_tenancy::{SubjectId, TenantContext};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait as _, DatabaseTransaction, DbBackend, EntityTrait,
    PaginatorTrait as _, QueryFilter, QueryOrder,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{Backend, Database, statement, storage_error};
use crate::db::{Fetch as _, Run as _};
use crate::entity::{bulk_export as job, bulk_export_file as file};
use crate::fields::{self, KeyVersions};
use crate::keys::KeyRing;
use crate::repo::{self, Sealer, audited};
use crate::scope::Scoped as _;
use crate::sealed::bulk_export_files::{BODY, TABLE};

/// Bulk exports in `db`, their files sealed with the organizations' keys.
#[derive(Clone, Debug)]
pub struct SeaExports {
    db: Database,
    keys: Arc<KeyRing>,
}

impl SeaExports {
    /// Exports in `db`.
    pub fn new(db: Database, keys: Arc<KeyRing>) -> Self {
        Self { db, keys }
    }

    /// Applies `update` to export `id` if it is [`live`]; `false` if not.
    async fn update_live(
        &self,
        ctx: &TenantContext,
        id: ExportId,
        update: sea_orm::UpdateMany<job::Entity>,
    ) -> Result<bool, ClinicalError> {
        let tx = self.db.begin_tenant(ctx).await?;
        let done = update
            .scoped(ctx)
            .filter(job::Column::Id.eq(id.as_uuid()))
            .filter(live())
            .run(&tx)
            .await?;
        repo::commit::<ClinicalError>(tx).await?;
        Ok(done.rows_affected == 1)
    }
}

fn integrity() -> ClinicalError {
    ClinicalError::Storage(fields::integrity())
}

fn types_text(types: &[ResourceType]) -> String {
    types
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Exports in progress and within their [`LEASE`]: an abandoned one (see
/// [`standing`]) is neither counted, renewed nor finished: it stays failed.
fn live() -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(job::Column::Status.eq(ExportStatus::InProgress.as_str()))
        .add(job::Column::RenewedAt.gte(OffsetDateTime::now_utc() - LEASE))
}

async fn job_row(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    id: ExportId,
    now: OffsetDateTime,
) -> Result<Option<job::Model>, ClinicalError> {
    Ok(job::Entity::find()
        .scoped(ctx)
        .filter(job::Column::Id.eq(id.as_uuid()))
        .filter(job::Column::ExpiresAt.gt(now))
        .one_in(tx)
        .await?)
}

impl ExportRepository for SeaExports {
    async fn create(&self, access: &Access, new: &NewExport) -> Result<ExportId, ClinicalError> {
        let ctx = access.tenant();
        let id = ExportId::from_uuid(Uuid::now_v7());
        // Stored to the microsecond, as every time is.
        let started = new
            .started_at
            .replace_nanosecond(new.started_at.nanosecond() / 1000 * 1000)
            .unwrap_or(new.started_at);
        let row = job::ActiveModel {
            org_id: Set(ctx.org().as_uuid()),
            id: Set(id.as_uuid()),
            requester: Set(ctx.actor().as_str().to_owned()),
            status: Set(ExportStatus::InProgress.as_str().to_owned()),
            request_url: Set(new.request_url.chars().take(2048).collect()),
            types: Set(types_text(&new.types)),
            since: Set(new.since),
            error: Set(None),
            created_at: Set(started),
            expires_at: Set(new.expires_at),
            renewed_at: Set(Some(started)),
        };
        let backend = self.db.backend();
        audited(&self.db, ctx, async |tx: &DatabaseTransaction| {
            if backend == Backend::Postgres {
                // One start per subject at a time, across servers (SQLite
                // writes one transaction at a time anyway).
                let key = format!("{}:{}", ctx.org(), ctx.actor().as_str());
                tx.execute_raw(statement(
                    DbBackend::Postgres,
                    "SELECT pg_advisory_xact_lock(1650553971, hashtext($1::text))",
                    vec![key.into()],
                ))
                .await
                .map_err(storage_error)?;
            }
            let running = job::Entity::find()
                .scoped(ctx)
                .filter(job::Column::Requester.eq(ctx.actor().as_str()))
                .filter(job::Column::ExpiresAt.gt(OffsetDateTime::now_utc()))
                // Abandoned ones (their server stopped) hold no place.
                .filter(live())
                .count(tx)
                .await
                .map_err(storage_error)?;
            if running >= RUNNING_MAX {
                return Err(ClinicalError::Busy(RUNNING_RETRY));
            }
            job::Entity::insert(row).run(tx).await?;
            let started = repo::event(
                access,
                "export.start",
                "bulk_export",
                Some(id),
                Outcome::Allowed,
            )
            .with_detail(format!("types {}", types_text(&new.types)));
            Ok((id, vec![started]))
        })
        .await
    }

    async fn get(
        &self,
        ctx: &TenantContext,
        id: ExportId,
        now: OffsetDateTime,
    ) -> Result<Option<ExportJob>, ClinicalError> {
        let tx = self.db.begin_tenant_read(ctx).await?;
        let Some(row) = job_row(&tx, ctx, id, now).await? else {
            repo::commit::<ClinicalError>(tx).await?;
            return Ok(None);
        };
        let files = file::Entity::find()
            .scoped(ctx)
            .filter(file::Column::ExportId.eq(id.as_uuid()))
            .order_by_asc(file::Column::N)
            .all_in(&tx)
            .await?;
        repo::commit::<ClinicalError>(tx).await?;
        let types = row
            .types
            .split(',')
            .map(|t| ResourceType::parse(t).ok_or_else(integrity))
            .collect::<Result<Vec<_>, _>>()?;
        let (status, abandoned) = standing(
            ExportStatus::parse(&row.status).ok_or_else(integrity)?,
            row.renewed_at.unwrap_or(row.created_at),
            now,
        );
        Ok(Some(ExportJob {
            id,
            requester: SubjectId::parse(&row.requester).map_err(|_| integrity())?,
            status,
            request_url: row.request_url,
            types,
            created_at: row.created_at,
            expires_at: row.expires_at,
            error: abandoned.map(str::to_owned).or(row.error),
            files: files
                .iter()
                .map(|f| {
                    Ok(ExportFile {
                        n: u32::try_from(f.n).map_err(|_| integrity())?,
                        resource_type: ResourceType::parse(&f.resource_type)
                            .ok_or_else(integrity)?,
                        count: u64::try_from(f.lines).map_err(|_| integrity())?,
                    })
                })
                .collect::<Result<_, ClinicalError>>()?,
        }))
    }

    async fn renew(&self, ctx: &TenantContext, id: ExportId) -> Result<bool, ClinicalError> {
        let renew = job::Entity::update_many().col_expr(
            job::Column::RenewedAt,
            Expr::value(carapace_audit::event::now_micros()),
        );
        self.update_live(ctx, id, renew).await
    }

    async fn add_file(
        &self,
        ctx: &TenantContext,
        id: ExportId,
        f: &ExportFile,
        ndjson: &[u8],
    ) -> Result<(), ClinicalError> {
        let key = self.keys.current(ctx).await?;
        let (org, row_id) = (ctx.org().as_uuid(), Uuid::now_v7());
        let body = Sealer::new(&key, org, TABLE, row_id).seal_bytes(BODY, ndjson)?;
        let row = file::ActiveModel {
            org_id: Set(org),
            id: Set(row_id),
            export_id: Set(id.as_uuid()),
            n: Set(i32::try_from(f.n).map_err(|_| integrity())?),
            resource_type: Set(f.resource_type.as_str().to_owned()),
            lines: Set(i64::try_from(f.count).map_err(|_| integrity())?),
            key_version: Set(i32::try_from(key.version()).map_err(|_| integrity())?),
            body: Set(body),
        };
        let tx = self.db.begin_tenant(ctx).await?;
        file::Entity::insert(row).run(&tx).await?;
        repo::commit::<ClinicalError>(tx).await
    }

    async fn finish(
        &self,
        ctx: &TenantContext,
        id: ExportId,
        status: ExportStatus,
        error: Option<&str>,
    ) -> Result<bool, ClinicalError> {
        let end = job::Entity::update_many()
            .col_expr(job::Column::Status, Expr::value(status.as_str()))
            .col_expr(
                job::Column::Error,
                Expr::value(error.map(|e| e.chars().take(500).collect::<String>())),
            );
        self.update_live(ctx, id, end).await
    }

    async fn file(
        &self,
        access: &Access,
        id: ExportId,
        n: u32,
        now: OffsetDateTime,
    ) -> Result<Option<Vec<u8>>, ClinicalError> {
        let ctx = access.tenant();
        let found: Option<file::Model> =
            audited::<_, ClinicalError, _>(&self.db, ctx, async |tx: &DatabaseTransaction| {
                let row = match job_row(tx, ctx, id, now).await? {
                    Some(j) if j.status == ExportStatus::Complete.as_str() => {
                        file::Entity::find()
                            .scoped(ctx)
                            .filter(file::Column::ExportId.eq(id.as_uuid()))
                            .filter(file::Column::N.eq(i32::try_from(n).unwrap_or(i32::MAX)))
                            .one_in(tx)
                            .await?
                    }
                    _ => None,
                };
                let outcome = Outcome::found(row.is_some());
                let event =
                    repo::event(access, "export.download", "bulk_export", Some(id), outcome)
                        .with_detail(format!("file {n}"));
                Ok((row, vec![event]))
            })
            .await?;
        let Some(row) = found else {
            return Ok(None);
        };
        let key = KeyVersions::new(&self.keys, ctx)
            .get(row.key_version)
            .await?;
        let body = Sealer::new(&key, row.org_id, TABLE, row.id).open_bytes(BODY, &row.body)?;
        Ok(Some(body))
    }

    async fn delete(&self, access: &Access, id: ExportId) -> Result<bool, ClinicalError> {
        let ctx = access.tenant();
        audited(&self.db, ctx, async |tx: &DatabaseTransaction| {
            let done = job::Entity::delete_many()
                .scoped(ctx)
                .filter(job::Column::Id.eq(id.as_uuid()))
                .run(tx)
                .await?;
            let gone = done.rows_affected == 1;
            let outcome = Outcome::found(gone);
            let event = repo::event(access, "export.delete", "bulk_export", Some(id), outcome);
            Ok((gone, vec![event]))
        })
        .await
    }
}
