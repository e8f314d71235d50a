//! Administering accounts ([`AdminStore`]) and their second factors ([`MfaStore`]).

use super::*;

impl AdminStore for SeaAccounts {
    async fn list(&self, ctx: &TenantContext) -> Result<Vec<Account>, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let rows = user::Entity::find()
            .scoped(ctx)
            .order_by_asc(user::Column::Id)
            .limit(1000)
            .all_in(&tx)
            .await?;
        commit(tx).await?;
        Ok(rows.into_iter().filter_map(to_account).collect())
    }

    async fn apply(
        &self,
        ctx: &TenantContext,
        user_id: UserId,
        change: AdminChange,
        now: OffsetDateTime,
    ) -> Result<bool, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let org = ctx.org().as_uuid();
        let update = user::Entity::update_many()
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .in_org(org)
            .filter(user::Column::Id.eq(user_id.as_uuid()));
        let update = match change {
            AdminChange::Roles(roles) => {
                update.col_expr(user::Column::Roles, Expr::value(roles_to_text(roles)))
            }
            AdminChange::Lock => update.col_expr(user::Column::AdminLocked, Expr::value(true)),
            AdminChange::Unlock => update
                .col_expr(user::Column::AdminLocked, Expr::value(false))
                .col_expr(
                    user::Column::LockedUntil,
                    Expr::value(None::<OffsetDateTime>),
                )
                .col_expr(user::Column::FailedLogins, Expr::value(0)),
            AdminChange::Deactivate => update.col_expr(user::Column::Active, Expr::value(false)),
            AdminChange::ResetMfa => update
                .col_expr(user::Column::TotpSeed, Expr::value(None::<Vec<u8>>))
                .col_expr(user::Column::TotpEnabled, Expr::value(false)),
        };
        if update.run(&tx).await?.rows_affected == 0 {
            return Ok(false);
        }
        if change.ends_sessions() {
            revoke_user_sessions(&tx, ctx, user_id.as_uuid(), None, now).await?;
        }
        if change == AdminChange::ResetMfa {
            // The removed factor's unused recovery codes go with it.
            recovery_code::Entity::delete_many()
                .in_org(org)
                .filter(recovery_code::Column::UserId.eq(user_id.as_uuid()))
                .run(&tx)
                .await?;
        }
        if matches!(change, AdminChange::Lock | AdminChange::Deactivate) {
            // Containment: no reset code and no calendar feed outlives it.
            void_reset_codes(&tx, ctx, user_id.as_uuid(), now).await?;
            revoke_feeds(&tx, ctx, &user_id.to_string(), now).await?;
        }
        let subject = format!("{user_id} by {}", ctx.actor());
        record_event(&tx, ctx, change.event(), Some(subject), now).await?;
        commit(tx).await?;
        Ok(true)
    }
}

pub(super) async fn find_user(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    user_id: UserId,
) -> Result<Option<user::Model>, AuthError> {
    user::Entity::find()
        .scoped(ctx)
        .filter(user::Column::Id.eq(user_id.as_uuid()))
        .one(tx)
        .await
        .map_err(db_err)
}

impl MfaStore for SeaAccounts {
    async fn totp_state(
        &self,
        ctx: &TenantContext,
        user_id: UserId,
    ) -> Result<Option<TotpState>, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let row = find_user(&tx, ctx, user_id).await?;
        commit(tx).await?;
        Ok(row.and_then(|r| {
            r.totp_seed.map(|sealed_seed| TotpState {
                sealed_seed,
                enabled: r.totp_enabled,
            })
        }))
    }

    async fn set_pending_totp(
        &self,
        ctx: &TenantContext,
        user_id: UserId,
        sealed_seed: Vec<u8>,
    ) -> Result<bool, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let done = user::Entity::update_many()
            .col_expr(user::Column::TotpSeed, Expr::value(Some(sealed_seed)))
            .col_expr(
                user::Column::UpdatedAt,
                Expr::value(OffsetDateTime::now_utc()),
            )
            .scoped(ctx)
            .filter(user::Column::Id.eq(user_id.as_uuid()))
            .filter(user::Column::TotpEnabled.eq(false))
            .run(&tx)
            .await?;
        commit(tx).await?;
        Ok(done.rows_affected == 1)
    }

    async fn enable_totp(
        &self,
        ctx: &TenantContext,
        user_id: UserId,
        step: u64,
        recovery_hashes: Vec<[u8; 32]>,
        keep: Option<SessionId>,
    ) -> Result<bool, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let now = OffsetDateTime::now_utc();
        let org = ctx.org().as_uuid();
        let done = user::Entity::update_many()
            .col_expr(user::Column::TotpEnabled, Expr::value(true))
            .col_expr(
                user::Column::TotpLastStep,
                Expr::value(Some(i64::try_from(step).unwrap_or(i64::MAX))),
            )
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .in_org(org)
            .filter(user::Column::Id.eq(user_id.as_uuid()))
            .filter(user::Column::TotpEnabled.eq(false))
            .filter(user::Column::TotpSeed.is_not_null())
            .run(&tx)
            .await?;
        if done.rows_affected != 1 {
            return Ok(false);
        }
        recovery_code::Entity::delete_many()
            .in_org(org)
            .filter(recovery_code::Column::UserId.eq(user_id.as_uuid()))
            .run(&tx)
            .await?;
        let rows = recovery_hashes
            .into_iter()
            .map(|h| recovery_code::ActiveModel {
                org_id: Set(org),
                user_id: Set(user_id.as_uuid()),
                hash: Set(h.to_vec()),
                used_at: Set(None),
                created_at: Set(now),
            });
        recovery_code::Entity::insert_many(rows).run(&tx).await?;
        revoke_user_sessions(&tx, ctx, user_id.as_uuid(), keep, now).await?;
        commit(tx).await?;
        Ok(true)
    }

    async fn spend_challenge(
        &self,
        ctx: &TenantContext,
        id: Uuid,
        expires_at: OffsetDateTime,
    ) -> Result<bool, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        // The primary key is the arbiter: one insert per challenge wins.
        let inserted = mfa_challenge_spent::Entity::insert(mfa_challenge_spent::ActiveModel {
            org_id: Set(ctx.org().as_uuid()),
            id: Set(id),
            expires_at: Set(expires_at),
        })
        .on_conflict_do_nothing()
        .run(&tx)
        .await?;
        commit(tx).await?;
        Ok(matches!(inserted, sea_orm::TryInsertResult::Inserted(1)))
    }

    async fn claim_totp_step(
        &self,
        ctx: &TenantContext,
        user_id: UserId,
        step: u64,
    ) -> Result<bool, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        let done = user::Entity::update_many()
            .col_expr(user::Column::TotpLastStep, Expr::value(Some(step)))
            .scoped(ctx)
            .filter(user::Column::Id.eq(user_id.as_uuid()))
            .filter(
                sea_orm::Condition::any()
                    .add(user::Column::TotpLastStep.is_null())
                    .add(user::Column::TotpLastStep.lt(step)),
            )
            .run(&tx)
            .await?;
        commit(tx).await?;
        Ok(done.rows_affected == 1)
    }

    async fn use_recovery_code(
        &self,
        ctx: &TenantContext,
        user_id: UserId,
        hash: [u8; 32],
        now: OffsetDateTime,
    ) -> Result<bool, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let done = recovery_code::Entity::update_many()
            .col_expr(recovery_code::Column::UsedAt, Expr::value(now))
            .scoped(ctx)
            .filter(recovery_code::Column::UserId.eq(user_id.as_uuid()))
            .filter(recovery_code::Column::Hash.eq(hash.to_vec()))
            .filter(recovery_code::Column::UsedAt.is_null())
            .run(&tx)
            .await?;
        commit(tx).await?;
        Ok(done.rows_affected == 1)
    }
}
