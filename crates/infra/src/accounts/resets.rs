//! Password-reset codes ([`ResetStore`]) and what a reset or an account change revokes with them: open codes, sessions, calendar feeds.

use super::*;

/// [`ResetStore`] over `password_resets`.
#[derive(Clone, Debug)]
pub struct SeaResets {
    db: Database,
}

impl SeaResets {
    /// Reset tokens in `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

impl ResetStore for SeaResets {
    async fn create(
        &self,
        ctx: &TenantContext,
        user_id: UserId,
        token_hash: [u8; 32],
        expires_at: OffsetDateTime,
    ) -> Result<(), AuthError> {
        let tx = begin(&self.db, ctx).await?;
        // Only the newest code works: earlier unused ones are void.
        void_reset_codes(&tx, ctx, user_id.as_uuid(), OffsetDateTime::now_utc()).await?;
        password_reset::Entity::insert(password_reset::ActiveModel {
            org_id: Set(ctx.org().as_uuid()),
            hash: Set(token_hash.to_vec()),
            user_id: Set(user_id.as_uuid()),
            expires_at: Set(expires_at),
            used_at: Set(None),
            created_at: Set(OffsetDateTime::now_utc()),
        })
        .run(&tx)
        .await?;
        commit(tx).await
    }

    async fn complete(
        &self,
        ctx: &TenantContext,
        token_hash: [u8; 32],
        new_password_hash: String,
        now: OffsetDateTime,
    ) -> Result<Option<UserId>, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let org = ctx.org().as_uuid();
        let claimed = password_reset::Entity::update_many()
            .col_expr(password_reset::Column::UsedAt, Expr::value(now))
            .in_org(org)
            .filter(password_reset::Column::Hash.eq(token_hash.to_vec()))
            .filter(password_reset::Column::UsedAt.is_null())
            .filter(password_reset::Column::ExpiresAt.gt(now))
            .run(&tx)
            .await?
            .rows_affected;
        if claimed == 0 {
            return Ok(None);
        }
        let Some(reset) = password_reset::Entity::find()
            .in_org(org)
            .filter(password_reset::Column::Hash.eq(token_hash.to_vec()))
            .one_in(&tx)
            .await?
        else {
            return Ok(None);
        };
        // The account must still be one a code may open: active, and not
        // locked by an administrator (a code issued before either is void).
        let Some(account) = find_user(&tx, ctx, UserId::from_uuid(reset.user_id))
            .await?
            .and_then(to_account)
            .filter(|a| a.active && !a.login.admin_locked)
        else {
            // The code is spent all the same; nothing else changes.
            commit(tx).await?;
            return Ok(None);
        };
        // Using one code voids the others.
        void_reset_codes(&tx, ctx, reset.user_id, now).await?;
        let login = account.login.after_reset();
        user::Entity::update_many()
            .col_expr(
                user::Column::PasswordHash,
                Expr::value(Some(new_password_hash)),
            )
            .col_expr(
                user::Column::FailedLogins,
                Expr::value(i32::try_from(login.failed).unwrap_or(i32::MAX)),
            )
            .col_expr(
                user::Column::LockedUntil,
                Expr::value(login.throttled_until),
            )
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .in_org(org)
            .filter(user::Column::Id.eq(reset.user_id))
            .run(&tx)
            .await?;
        revoke_user_sessions(&tx, ctx, reset.user_id, None, now).await?;
        record_event(
            &tx,
            ctx,
            events::PASSWORD_RESET,
            Some(reset.user_id.to_string()),
            now,
        )
        .await?;
        commit(tx).await?;
        Ok(Some(account.id))
    }
}

/// Voids every unused reset code of `user_id` (marks it used at `now`).
pub(super) async fn void_reset_codes(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    user_id: Uuid,
    now: OffsetDateTime,
) -> Result<u64, AuthError> {
    Ok(password_reset::Entity::update_many()
        .col_expr(password_reset::Column::UsedAt, Expr::value(now))
        .scoped(ctx)
        .filter(password_reset::Column::UserId.eq(user_id))
        .filter(password_reset::Column::UsedAt.is_null())
        .run(tx)
        .await?
        .rows_affected)
}

/// Ends every live session of `user_id` but `keep`.
pub(super) async fn revoke_user_sessions(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    user_id: Uuid,
    keep: Option<SessionId>,
    now: OffsetDateTime,
) -> Result<u64, AuthError> {
    let mut update = session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(now))
        .scoped(ctx)
        .filter(session::Column::UserId.eq(user_id))
        .filter(session::Column::RevokedAt.is_null());
    if let Some(keep) = keep {
        update = update.filter(session::Column::Id.ne(keep.as_uuid()));
    }
    Ok(update.run(tx).await?.rows_affected)
}

/// Ends every calendar feed of the practitioner `subject` (a user locked,
/// deactivated or gone): the feed must not outlive its practitioner.
pub(crate) async fn revoke_feeds(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    subject: &str,
    now: OffsetDateTime,
) -> Result<u64, AuthError> {
    Ok(calendar_feed::Entity::update_many()
        .col_expr(calendar_feed::Column::RevokedAt, Expr::value(now))
        .scoped(ctx)
        .filter(calendar_feed::Column::Practitioner.eq(subject))
        .filter(calendar_feed::Column::RevokedAt.is_null())
        .run(tx)
        .await?
        .rows_affected)
}
