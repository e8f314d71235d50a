//! [`SubjectStore`] over `subject_blocks`: the standing of
//! identity-provider subjects that an administrator locked, unlocked or
//! deactivated, read on every request that carries an issuer token.

use carapace_auth::AuthError;
use carapace_auth::local::admin::AdminChange;
use carapace_auth::subjects::{Standing, SubjectState, SubjectStore};
use carapace_tenancy::{SubjectId, TenantContext};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait as _, ConnectionTrait as _, DbBackend, EntityTrait as _, QueryFilter as _,
    Statement,
};
use time::OffsetDateTime;

use crate::accounts::{SeaAccounts, revoke_feeds};
use crate::db::{Backend, Database, storage_error, wait};
use crate::db::{Fetch as _, Run as _};
use crate::entity::{security_event, subject_block};
use crate::scope::Scoped as _;

fn db_err(e: sea_orm::DbErr) -> AuthError {
    AuthError::Storage(storage_error(e))
}

impl SubjectStore for SeaAccounts {
    async fn standing(
        &self,
        ctx: &TenantContext,
        subject: &SubjectId,
    ) -> Result<Option<Standing>, AuthError> {
        if self.db().backend() == Backend::Postgres {
            return standing_in_one_statement(self.db(), ctx, subject).await;
        }
        let tx = self
            .db()
            .begin_tenant_read(ctx)
            .await
            .map_err(AuthError::Storage)?;
        let row = subject_block::Entity::find()
            .scoped(ctx)
            .filter(subject_block::Column::Subject.eq(subject.as_str()))
            .one_in(&tx)
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(row.map(|r| Standing {
            state: SubjectState::parse(&r.state),
            not_before: r.not_before,
        }))
    }

    async fn set_standing(
        &self,
        ctx: &TenantContext,
        subject: &SubjectId,
        standing: Standing,
        change: AdminChange,
    ) -> Result<(), AuthError> {
        let now = OffsetDateTime::now_utc();
        let tx = self
            .db()
            .begin_tenant(ctx)
            .await
            .map_err(AuthError::Storage)?;
        subject_block::Entity::insert(subject_block::ActiveModel {
            org_id: Set(ctx.org().as_uuid()),
            subject: Set(subject.as_str().to_owned()),
            state: Set(standing.state.as_str().to_owned()),
            not_before: Set(standing.not_before),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([subject_block::Column::OrgId, subject_block::Column::Subject])
                .update_columns([
                    subject_block::Column::State,
                    subject_block::Column::NotBefore,
                    subject_block::Column::UpdatedAt,
                ])
                .to_owned(),
        )
        .run(&tx)
        .await?;
        if matches!(change, AdminChange::Lock | AdminChange::Deactivate) {
            revoke_feeds(&tx, ctx, subject.as_str(), now).await?;
        }
        security_event::Entity::insert(security_event::ActiveModel {
            org_id: Set(ctx.org().as_uuid()),
            id: Set(uuid::Uuid::now_v7()),
            kind: Set(change.event().to_owned()),
            subject: Set(Some(format!("{} by {}", subject.as_str(), ctx.actor()))),
            at: Set(now),
        })
        .run(&tx)
        .await?;
        tx.commit().await.map_err(db_err)
    }
}

/// On PostgreSQL the standing is one statement, `subject_standing` (m0028):
/// it sets the tenant and reads under row-level security as the server's
/// role, in the statement's own transaction, so the check every request
/// makes costs one round trip and no transaction of its own.
async fn standing_in_one_statement(
    db: &Database,
    ctx: &TenantContext,
    subject: &SubjectId,
) -> Result<Option<Standing>, AuthError> {
    let row = wait::bounded(db.conn().query_one_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT standing_state, standing_not_before FROM subject_standing($1, $2)",
        [ctx.org().as_uuid().into(), subject.as_str().into()],
    )))
    .await
    .map_err(AuthError::Storage)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let state: String = row.try_get("", "standing_state").map_err(db_err)?;
    let not_before: OffsetDateTime = row.try_get("", "standing_not_before").map_err(db_err)?;
    Ok(Some(Standing {
        state: SubjectState::parse(&state),
        not_before,
    }))
}
