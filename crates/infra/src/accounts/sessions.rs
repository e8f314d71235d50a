//! Sessions and refresh tokens ([`SessionStore`]).

use super::*;

impl SessionStore for SeaSessions {
    async fn start(
        &self,
        ctx: &TenantContext,
        user_id: UserId,
        amr: &[&str],
        refresh_hash: [u8; 32],
        now: OffsetDateTime,
    ) -> Result<SessionId, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let id = SessionId::generate();
        session::Entity::insert(session::ActiveModel {
            org_id: Set(ctx.org().as_uuid()),
            id: Set(id.as_uuid()),
            user_id: Set(user_id.as_uuid()),
            amr: Set(amr.join(" ")),
            created_at: Set(now),
            last_used_at: Set(now),
            revoked_at: Set(None),
        })
        .run(&tx)
        .await?;
        insert_token(&tx, ctx, id, refresh_hash, now).await?;
        commit(tx).await?;
        Ok(id)
    }

    async fn rotate(
        &self,
        ctx: &TenantContext,
        presented: [u8; 32],
        next: [u8; 32],
        sealed_next: Vec<u8>,
        now: OffsetDateTime,
        limits: SessionLimits,
    ) -> Result<Rotation, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let org = ctx.org().as_uuid();
        // The conditional UPDATE is the arbiter: of concurrent rotations of
        // one token exactly one sees `used_at IS NULL`; it keeps the
        // successor, sealed, for the grace window.
        let claimed = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
            .col_expr(
                refresh_token::Column::Successor,
                Expr::value(Some(sealed_next)),
            )
            .in_org(org)
            .filter(refresh_token::Column::Hash.eq(presented.to_vec()))
            .filter(refresh_token::Column::UsedAt.is_null())
            .run(&tx)
            .await?
            .rows_affected;
        let token = refresh_token::Entity::find()
            .in_org(org)
            .filter(refresh_token::Column::Hash.eq(presented.to_vec()))
            .one_in(&tx)
            .await?;
        let Some(token) = token else {
            return Ok(Rotation::Invalid);
        };
        let live = live_session(&tx, ctx, token.session_id, now, limits).await?;
        if claimed == 0 {
            // Spent already. Moments ago, by the same live session (two tabs
            // at once): hand out the same successor. Otherwise a replay:
            // end the whole family.
            if let (Some((session_id, account, amr)), Some(used_at), Some(sealed)) =
                (&live, token.used_at, token.successor.clone())
                && within_grace(used_at, now, limits)
            {
                commit(tx).await?;
                return Ok(Rotation::Repeated {
                    session: *session_id,
                    account: account.clone(),
                    amr: amr.clone(),
                    sealed_successor: sealed,
                });
            }
            revoke_session(&tx, ctx, token.session_id, now).await?;
            record_event(
                &tx,
                ctx,
                events::REFRESH_REUSE,
                Some(token.session_id.to_string()),
                now,
            )
            .await?;
            commit(tx).await?;
            return Ok(Rotation::Reused);
        }
        let Some((session_id, account, amr)) = live else {
            return Ok(Rotation::Invalid); // dropped: the token stays unused
        };
        insert_token(&tx, ctx, session_id, next, now).await?;
        session::Entity::update_many()
            .col_expr(session::Column::LastUsedAt, Expr::value(now))
            .in_org(org)
            .filter(session::Column::Id.eq(session_id.as_uuid()))
            .run(&tx)
            .await?;
        commit(tx).await?;
        Ok(Rotation::Rotated {
            session: session_id,
            account,
            amr,
        })
    }

    async fn revoke_all(
        &self,
        ctx: &TenantContext,
        user_id: UserId,
        keep: Option<SessionId>,
        now: OffsetDateTime,
    ) -> Result<u64, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let ended = revoke_user_sessions(&tx, ctx, user_id.as_uuid(), keep, now).await?;
        commit(tx).await?;
        Ok(ended)
    }

    async fn is_active(
        &self,
        ctx: &TenantContext,
        session_id: SessionId,
    ) -> Result<bool, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let found = session::Entity::find()
            .scoped(ctx)
            .filter(session::Column::Id.eq(session_id.as_uuid()))
            .filter(session::Column::RevokedAt.is_null())
            .one_in(&tx)
            .await?;
        commit(tx).await?;
        Ok(found.is_some())
    }

    async fn revoke_by_token(
        &self,
        ctx: &TenantContext,
        presented: [u8; 32],
        now: OffsetDateTime,
    ) -> Result<bool, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let token = refresh_token::Entity::find()
            .scoped(ctx)
            .filter(refresh_token::Column::Hash.eq(presented.to_vec()))
            .one_in(&tx)
            .await?;
        let revoked = match token {
            Some(t) => revoke_session(&tx, ctx, t.session_id, now).await?,
            None => false,
        };
        commit(tx).await?;
        Ok(revoked)
    }
}
