//! Service keys over SeaORM (hashes only), each call in a tenant transaction.

use carapace_auth::AuthError;
use carapace_auth::RoleSet;
use carapace_auth::service_keys::{ServiceKeyId, ServiceKeyInfo, ServiceKeyStore};
use carapace_tenancy::TenantContext;
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::accounts::{roles_from_text, roles_to_text};
use crate::db::{Database, storage_error};
use crate::db::{Fetch as _, Run as _};
use crate::entity::backend_assertion as assertion;
use crate::entity::service_key as row;
use crate::scope::Scoped as _;

/// [`ServiceKeyStore`] over `service_keys`.
#[derive(Clone, Debug)]
pub struct SeaServiceKeys {
    db: Database,
}

impl SeaServiceKeys {
    /// Keys in `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn db_err(e: sea_orm::DbErr) -> AuthError {
    AuthError::Storage(storage_error(e))
}

fn info(r: row::Model) -> ServiceKeyInfo {
    ServiceKeyInfo {
        id: ServiceKeyId::from_uuid(r.id),
        name: r.name,
        roles: roles_from_text(&r.roles),
        created_at: r.created_at,
        last_used_at: r.last_used_at,
        revoked_at: r.revoked_at,
        jwks: r.jwks,
    }
}

impl ServiceKeyStore for SeaServiceKeys {
    async fn create(
        &self,
        ctx: &TenantContext,
        name: &str,
        roles: RoleSet,
        hash: [u8; 32],
        jwks: Option<&str>,
    ) -> Result<ServiceKeyInfo, AuthError> {
        let tx = self
            .db
            .begin_tenant(ctx)
            .await
            .map_err(AuthError::Storage)?;
        let model = row::Model {
            org_id: ctx.org().as_uuid(),
            id: Uuid::now_v7(),
            name: name.trim().to_owned(),
            hash: hash.to_vec(),
            roles: roles_to_text(roles),
            created_at: OffsetDateTime::now_utc(),
            last_used_at: None,
            revoked_at: None,
            jwks: jwks.map(str::to_owned),
        };
        let active = row::ActiveModel::from(model.clone());
        row::Entity::insert(active).run(&tx).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(info(model))
    }

    async fn list(&self, ctx: &TenantContext) -> Result<Vec<ServiceKeyInfo>, AuthError> {
        let tx = self
            .db
            .begin_tenant(ctx)
            .await
            .map_err(AuthError::Storage)?;
        let rows = row::Entity::find()
            .scoped(ctx)
            .order_by_asc(row::Column::Id)
            .all_in(&tx)
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(rows.into_iter().map(info).collect())
    }

    async fn revoke(
        &self,
        ctx: &TenantContext,
        id: ServiceKeyId,
        now: OffsetDateTime,
    ) -> Result<bool, AuthError> {
        let id = id.as_uuid();
        let tx = self
            .db
            .begin_tenant(ctx)
            .await
            .map_err(AuthError::Storage)?;
        let done = row::Entity::update_many()
            .col_expr(row::Column::RevokedAt, Expr::value(now))
            .scoped(ctx)
            .filter(row::Column::Id.eq(id))
            .filter(row::Column::RevokedAt.is_null())
            .run(&tx)
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected == 1)
    }

    async fn active(
        &self,
        ctx: &TenantContext,
        id: ServiceKeyId,
    ) -> Result<Option<ServiceKeyInfo>, AuthError> {
        let tx = self
            .db
            .begin_tenant_read(ctx)
            .await
            .map_err(AuthError::Storage)?;
        let found = row::Entity::find()
            .scoped(ctx)
            .filter(row::Column::Id.eq(id.as_uuid()))
            .filter(row::Column::RevokedAt.is_null())
            .one_in(&tx)
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(found.map(info))
    }

    async fn use_assertion(
        &self,
        ctx: &TenantContext,
        id: ServiceKeyId,
        jti: &str,
        expires_at: OffsetDateTime,
    ) -> Result<bool, AuthError> {
        let tx = self
            .db
            .begin_tenant(ctx)
            .await
            .map_err(AuthError::Storage)?;
        // Expired assertions are refused by their exp anyway: forget them.
        assertion::Entity::delete_many()
            .scoped(ctx)
            .filter(assertion::Column::ExpiresAt.lt(OffsetDateTime::now_utc()))
            .run(&tx)
            .await?;
        let first = assertion::Entity::insert(assertion::ActiveModel {
            org_id: Set(ctx.org().as_uuid()),
            key_id: Set(id.as_uuid()),
            jti: Set(jti.to_owned()),
            expires_at: Set(expires_at),
        })
        .on_conflict(
            OnConflict::columns([
                assertion::Column::OrgId,
                assertion::Column::KeyId,
                assertion::Column::Jti,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(&tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(first == 1)
    }

    async fn authenticate(
        &self,
        ctx: &TenantContext,
        hash: [u8; 32],
        now: OffsetDateTime,
    ) -> Result<Option<ServiceKeyInfo>, AuthError> {
        let tx = self
            .db
            .begin_tenant(ctx)
            .await
            .map_err(AuthError::Storage)?;
        let found = row::Entity::find()
            .scoped(ctx)
            .filter(row::Column::Hash.eq(hash.to_vec()))
            .filter(row::Column::RevokedAt.is_null())
            .one_in(&tx)
            .await?;
        if let Some(key) = &found {
            row::Entity::update_many()
                .col_expr(row::Column::LastUsedAt, Expr::value(now))
                .in_org(key.org_id)
                .filter(row::Column::Id.eq(key.id))
                .run(&tx)
                .await?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(found.map(|k| ServiceKeyInfo {
            last_used_at: Some(now),
            ..info(k)
        }))
    }
}
