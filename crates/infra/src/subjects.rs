//! [`SubjectStore`] over `subject_blocks`: the standing of
//! identity-provider subjects that an administrator locked, unlocked or
//! deactivated, read on every request that carries an issuer token.

use carapace_auth::AuthError;
use carapace_auth::local::admin::AdminChange;
use carapace_auth::subjects::{Standing, SubjectState, SubjectStore};
use carapace_tenancy::{SubjectId, TenantContext};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::OnConflict;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _};
use time::OffsetDateTime;

use crate::accounts::{SeaAccounts, revoke_feeds};
use crate::db::storage_error;
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
        let tx = self
            .db()
            .begin_tenant(ctx)
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
