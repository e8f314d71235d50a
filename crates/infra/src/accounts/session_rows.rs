//! The session and refresh-token rows both the session store and MFA write.

use super::*;

pub(super) async fn insert_token(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    session_id: SessionId,
    hash: [u8; 32],
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    refresh_token::Entity::insert(refresh_token::ActiveModel {
        org_id: Set(ctx.org().as_uuid()),
        hash: Set(hash.to_vec()),
        session_id: Set(session_id.as_uuid()),
        used_at: Set(None),
        created_at: Set(now),
        successor: Set(None),
    })
    .run(tx)
    .await?;
    Ok(())
}

/// The session `session_id`, its active account and its `amr`, if the
/// session is neither revoked nor past its limits at `now`.
pub(super) async fn live_session(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    session_id: Uuid,
    now: OffsetDateTime,
    limits: SessionLimits,
) -> Result<Option<(SessionId, Account, Vec<String>)>, AuthError> {
    let org = ctx.org().as_uuid();
    let Some(sess) = session::Entity::find()
        .in_org(org)
        .filter(session::Column::Id.eq(session_id))
        .one_in(tx)
        .await?
    else {
        return Ok(None);
    };
    if sess.revoked_at.is_some() || !session_alive(sess.created_at, sess.last_used_at, now, limits)
    {
        return Ok(None);
    }
    let account = find_user(tx, ctx, UserId::from_uuid(sess.user_id))
        .await?
        .and_then(to_account)
        .filter(|a| a.active && !a.login.admin_locked);
    Ok(account.map(|a| {
        let amr = sess.amr.split_whitespace().map(str::to_owned).collect();
        (SessionId::from_uuid(sess.id), a, amr)
    }))
}

pub(super) async fn revoke_session(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    session_id: Uuid,
    now: OffsetDateTime,
) -> Result<bool, AuthError> {
    let done = session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(now))
        .scoped(ctx)
        .filter(session::Column::Id.eq(session_id))
        .filter(session::Column::RevokedAt.is_null())
        .run(tx)
        .await?;
    Ok(done.rows_affected > 0)
}
