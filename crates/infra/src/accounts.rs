//! Local accounts, sessions and refresh tokens over SeaORM, each call in
//! one tenant transaction. Security events are written in the same
//! transaction as the change they describe.

use carapace_auth::local::admin::{AdminChange, AdminStore};
use carapace_auth::local::mfa::{MfaStore, TotpState};
use carapace_auth::local::{
    Account, AccountStore, Email, LoginState, ResetStore, Rotation, SessionId, SessionLimits,
    SessionStore, UserId, session_alive,
};
use carapace_auth::{AuthError, Role, RoleSet};
use carapace_tenancy::{OrgId, TenantContext};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{Database, storage_error};
use crate::entity::{password_reset, recovery_code, refresh_token, security_event, session, user};

/// Kinds of security events.
pub mod events {
    /// Five consecutive failed logins locked an account.
    pub const ACCOUNT_LOCKED: &str = "account_locked";
    /// A used refresh token was presented again; its session was revoked.
    pub const REFRESH_REUSE: &str = "refresh_token_reuse";
    /// A password was reset; every session of the account was revoked.
    pub const PASSWORD_RESET: &str = "password_reset";
}

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
        password_reset::Entity::insert(password_reset::ActiveModel {
            org_id: Set(ctx.org().as_uuid()),
            hash: Set(token_hash.to_vec()),
            user_id: Set(user_id.as_uuid()),
            expires_at: Set(expires_at),
            used_at: Set(None),
            created_at: Set(OffsetDateTime::now_utc()),
        })
        .exec_without_returning(&tx)
        .await
        .map_err(db_err)?;
        commit(tx).await
    }

    async fn complete(
        &self,
        ctx: &TenantContext,
        token_hash: [u8; 32],
        new_password_hash: String,
        now: OffsetDateTime,
    ) -> Result<bool, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let org = ctx.org().as_uuid();
        let claimed = password_reset::Entity::update_many()
            .col_expr(password_reset::Column::UsedAt, Expr::value(now))
            .filter(password_reset::Column::OrgId.eq(org))
            .filter(password_reset::Column::Hash.eq(token_hash.to_vec()))
            .filter(password_reset::Column::UsedAt.is_null())
            .filter(password_reset::Column::ExpiresAt.gt(now))
            .exec(&tx)
            .await
            .map_err(db_err)?
            .rows_affected;
        if claimed == 0 {
            return Ok(false);
        }
        let Some(reset) = password_reset::Entity::find()
            .filter(password_reset::Column::OrgId.eq(org))
            .filter(password_reset::Column::Hash.eq(token_hash.to_vec()))
            .one(&tx)
            .await
            .map_err(db_err)?
        else {
            return Ok(false);
        };
        user::Entity::update_many()
            .col_expr(
                user::Column::PasswordHash,
                Expr::value(Some(new_password_hash)),
            )
            .col_expr(user::Column::FailedLogins, Expr::value(0))
            .col_expr(
                user::Column::LockedUntil,
                Expr::value(None::<OffsetDateTime>),
            )
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .filter(user::Column::OrgId.eq(org))
            .filter(user::Column::Id.eq(reset.user_id))
            .exec(&tx)
            .await
            .map_err(db_err)?;
        session::Entity::update_many()
            .col_expr(session::Column::RevokedAt, Expr::value(now))
            .filter(session::Column::OrgId.eq(org))
            .filter(session::Column::UserId.eq(reset.user_id))
            .filter(session::Column::RevokedAt.is_null())
            .exec(&tx)
            .await
            .map_err(db_err)?;
        record_event(
            &tx,
            ctx,
            events::PASSWORD_RESET,
            Some(reset.user_id.to_string()),
            now,
        )
        .await?;
        commit(tx).await?;
        Ok(true)
    }
}

/// [`AccountStore`] over the `users` table.
#[derive(Clone, Debug)]
pub struct SeaAccounts {
    db: Database,
}

impl SeaAccounts {
    /// Accounts in `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

/// [`SessionStore`] over `sessions` and `refresh_tokens`.
#[derive(Clone, Debug)]
pub struct SeaSessions {
    db: Database,
}

impl SeaSessions {
    /// Sessions in `db`.
    pub fn new(db: Database) -> Self {
        Self { db }
    }
}

fn db_err(e: sea_orm::DbErr) -> AuthError {
    AuthError::Storage(storage_error(e))
}

pub(crate) fn roles_to_text(roles: RoleSet) -> String {
    roles.iter().map(Role::as_str).collect::<Vec<_>>().join(",")
}

pub(crate) fn roles_from_text(text: &str) -> RoleSet {
    let roles: Vec<Role> = text.split(',').filter_map(|r| r.parse().ok()).collect();
    RoleSet::of(&roles)
}

fn to_account(r: user::Model) -> Option<Account> {
    Some(Account {
        id: UserId::from_uuid(r.id),
        org: OrgId::from_uuid(r.org_id),
        email: Email::parse(&r.email)?,
        password_hash: r.password_hash,
        roles: roles_from_text(&r.roles),
        active: r.active,
        login: LoginState {
            failed: u32::try_from(r.failed_logins).unwrap_or(0),
            locked_until: r.locked_until,
        },
        mfa_enabled: r.totp_enabled,
    })
}

async fn begin(db: &Database, ctx: &TenantContext) -> Result<DatabaseTransaction, AuthError> {
    db.begin_tenant(ctx).await.map_err(AuthError::Storage)
}

async fn commit(tx: DatabaseTransaction) -> Result<(), AuthError> {
    tx.commit().await.map_err(db_err)
}

/// Records a security event in the caller's transaction.
async fn record_event(
    tx: &impl ConnectionTrait,
    ctx: &TenantContext,
    kind: &str,
    subject: Option<String>,
    now: OffsetDateTime,
) -> Result<(), AuthError> {
    tracing::warn!(event = kind, org = %ctx.org(), "security event");
    security_event::Entity::insert(security_event::ActiveModel {
        org_id: Set(ctx.org().as_uuid()),
        id: Set(Uuid::now_v7()),
        kind: Set(kind.to_owned()),
        subject: Set(subject),
        at: Set(now),
    })
    .exec_without_returning(tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

impl AccountStore for SeaAccounts {
    async fn create(
        &self,
        ctx: &TenantContext,
        email: &Email,
        password_hash: Option<String>,
        roles: RoleSet,
    ) -> Result<Account, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let now = OffsetDateTime::now_utc();
        let id = UserId::generate();
        let row = user::ActiveModel {
            org_id: Set(ctx.org().as_uuid()),
            id: Set(id.as_uuid()),
            email: Set(email.as_str().to_owned()),
            password_hash: Set(password_hash.clone()),
            roles: Set(roles_to_text(roles)),
            active: Set(true),
            failed_logins: Set(0),
            locked_until: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            totp_seed: Set(None),
            totp_enabled: Set(false),
            totp_last_step: Set(None),
        };
        match user::Entity::insert(row).exec_without_returning(&tx).await {
            Ok(_) => {}
            Err(e) => {
                return Err(match storage_error(e) {
                    carapace_tenancy::StorageError::Constraint(_) => AuthError::EmailTaken,
                    other => AuthError::Storage(other),
                });
            }
        }
        commit(tx).await?;
        Ok(Account {
            id,
            org: ctx.org(),
            email: email.clone(),
            password_hash,
            roles,
            active: true,
            login: LoginState::default(),
            mfa_enabled: false,
        })
    }

    async fn find_by_email(
        &self,
        ctx: &TenantContext,
        email: &Email,
    ) -> Result<Option<Account>, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let row = user::Entity::find()
            .filter(user::Column::OrgId.eq(ctx.org().as_uuid()))
            .filter(user::Column::Email.eq(email.as_str()))
            .one(&tx)
            .await
            .map_err(db_err)?;
        commit(tx).await?;
        Ok(row.and_then(to_account))
    }

    async fn find_by_id(
        &self,
        ctx: &TenantContext,
        user_id: UserId,
    ) -> Result<Option<Account>, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let row = find_user(&tx, ctx, user_id).await?;
        commit(tx).await?;
        Ok(row.and_then(to_account))
    }

    async fn record_login(
        &self,
        ctx: &TenantContext,
        user_id: UserId,
        state: LoginState,
        locked_now: bool,
    ) -> Result<(), AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let now = OffsetDateTime::now_utc();
        user::Entity::update_many()
            .col_expr(
                user::Column::FailedLogins,
                Expr::value(i32::try_from(state.failed).unwrap_or(i32::MAX)),
            )
            .col_expr(user::Column::LockedUntil, Expr::value(state.locked_until))
            .col_expr(user::Column::UpdatedAt, Expr::value(now))
            .filter(user::Column::OrgId.eq(ctx.org().as_uuid()))
            .filter(user::Column::Id.eq(user_id.as_uuid()))
            .exec(&tx)
            .await
            .map_err(db_err)?;
        if locked_now {
            record_event(
                &tx,
                ctx,
                events::ACCOUNT_LOCKED,
                Some(user_id.to_string()),
                now,
            )
            .await?;
        }
        commit(tx).await
    }
}

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
        .exec_without_returning(&tx)
        .await
        .map_err(db_err)?;
        insert_token(&tx, ctx, id, refresh_hash, now).await?;
        commit(tx).await?;
        Ok(id)
    }

    async fn rotate(
        &self,
        ctx: &TenantContext,
        presented: [u8; 32],
        next: [u8; 32],
        now: OffsetDateTime,
        limits: SessionLimits,
    ) -> Result<Rotation, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let org = ctx.org().as_uuid();
        // The conditional UPDATE is the arbiter: of concurrent rotations of
        // one token exactly one sees `used_at IS NULL`.
        let claimed = refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::UsedAt, Expr::value(now))
            .filter(refresh_token::Column::OrgId.eq(org))
            .filter(refresh_token::Column::Hash.eq(presented.to_vec()))
            .filter(refresh_token::Column::UsedAt.is_null())
            .exec(&tx)
            .await
            .map_err(db_err)?
            .rows_affected;
        let token = refresh_token::Entity::find()
            .filter(refresh_token::Column::OrgId.eq(org))
            .filter(refresh_token::Column::Hash.eq(presented.to_vec()))
            .one(&tx)
            .await
            .map_err(db_err)?;
        let Some(token) = token else {
            return Ok(Rotation::Invalid);
        };
        if claimed == 0 {
            // Already used: someone replayed it. End the whole family.
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
        let Some(sess) = session::Entity::find()
            .filter(session::Column::OrgId.eq(org))
            .filter(session::Column::Id.eq(token.session_id))
            .one(&tx)
            .await
            .map_err(db_err)?
        else {
            return Ok(Rotation::Invalid);
        };
        if sess.revoked_at.is_some()
            || !session_alive(sess.created_at, sess.last_used_at, now, limits)
        {
            return Ok(Rotation::Invalid); // dropped: the token stays unused
        }
        let account = user::Entity::find()
            .filter(user::Column::OrgId.eq(org))
            .filter(user::Column::Id.eq(sess.user_id))
            .one(&tx)
            .await
            .map_err(db_err)?
            .and_then(to_account)
            .filter(|a| a.active);
        let Some(account) = account else {
            return Ok(Rotation::Invalid);
        };
        let session_id = SessionId::from_uuid(sess.id);
        insert_token(&tx, ctx, session_id, next, now).await?;
        session::Entity::update_many()
            .col_expr(session::Column::LastUsedAt, Expr::value(now))
            .filter(session::Column::OrgId.eq(org))
            .filter(session::Column::Id.eq(sess.id))
            .exec(&tx)
            .await
            .map_err(db_err)?;
        commit(tx).await?;
        let amr = sess.amr.split_whitespace().map(str::to_owned).collect();
        Ok(Rotation::Rotated {
            session: session_id,
            account,
            amr,
        })
    }

    async fn is_active(
        &self,
        ctx: &TenantContext,
        session_id: SessionId,
    ) -> Result<bool, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let found = session::Entity::find()
            .filter(session::Column::OrgId.eq(ctx.org().as_uuid()))
            .filter(session::Column::Id.eq(session_id.as_uuid()))
            .filter(session::Column::RevokedAt.is_null())
            .one(&tx)
            .await
            .map_err(db_err)?;
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
            .filter(refresh_token::Column::OrgId.eq(ctx.org().as_uuid()))
            .filter(refresh_token::Column::Hash.eq(presented.to_vec()))
            .one(&tx)
            .await
            .map_err(db_err)?;
        let revoked = match token {
            Some(t) => revoke_session(&tx, ctx, t.session_id, now).await?,
            None => false,
        };
        commit(tx).await?;
        Ok(revoked)
    }
}

impl AdminStore for SeaAccounts {
    async fn list(&self, ctx: &TenantContext) -> Result<Vec<Account>, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let rows = user::Entity::find()
            .filter(user::Column::OrgId.eq(ctx.org().as_uuid()))
            .order_by_asc(user::Column::Id)
            .limit(1000)
            .all(&tx)
            .await
            .map_err(db_err)?;
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
            .filter(user::Column::OrgId.eq(org))
            .filter(user::Column::Id.eq(user_id.as_uuid()));
        let update = match change {
            AdminChange::Roles(roles) => {
                update.col_expr(user::Column::Roles, Expr::value(roles_to_text(roles)))
            }
            AdminChange::Lock => update.col_expr(
                user::Column::LockedUntil,
                Expr::value(Some(LOCKED_FOR_GOOD)),
            ),
            AdminChange::Unlock => update
                .col_expr(
                    user::Column::LockedUntil,
                    Expr::value(None::<OffsetDateTime>),
                )
                .col_expr(user::Column::FailedLogins, Expr::value(0)),
            AdminChange::Deactivate => update.col_expr(user::Column::Active, Expr::value(false)),
        };
        if update.exec(&tx).await.map_err(db_err)?.rows_affected == 0 {
            return Ok(false);
        }
        if change.ends_sessions() {
            session::Entity::update_many()
                .col_expr(session::Column::RevokedAt, Expr::value(now))
                .filter(session::Column::OrgId.eq(org))
                .filter(session::Column::UserId.eq(user_id.as_uuid()))
                .filter(session::Column::RevokedAt.is_null())
                .exec(&tx)
                .await
                .map_err(db_err)?;
        }
        let subject = format!("{user_id} by {}", ctx.actor());
        record_event(&tx, ctx, change.event(), Some(subject), now).await?;
        commit(tx).await?;
        Ok(true)
    }
}

/// "Locked until unlocked": far enough to never pass.
const LOCKED_FOR_GOOD: OffsetDateTime = time::macros::datetime!(9999-12-31 0:00 UTC);

async fn find_user(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    user_id: UserId,
) -> Result<Option<user::Model>, AuthError> {
    user::Entity::find()
        .filter(user::Column::OrgId.eq(ctx.org().as_uuid()))
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
            .filter(user::Column::OrgId.eq(ctx.org().as_uuid()))
            .filter(user::Column::Id.eq(user_id.as_uuid()))
            .filter(user::Column::TotpEnabled.eq(false))
            .exec(&tx)
            .await
            .map_err(db_err)?;
        commit(tx).await?;
        Ok(done.rows_affected == 1)
    }

    async fn enable_totp(
        &self,
        ctx: &TenantContext,
        user_id: UserId,
        step: u64,
        recovery_hashes: Vec<[u8; 32]>,
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
            .filter(user::Column::OrgId.eq(org))
            .filter(user::Column::Id.eq(user_id.as_uuid()))
            .filter(user::Column::TotpEnabled.eq(false))
            .filter(user::Column::TotpSeed.is_not_null())
            .exec(&tx)
            .await
            .map_err(db_err)?;
        if done.rows_affected != 1 {
            return Ok(false);
        }
        recovery_code::Entity::delete_many()
            .filter(recovery_code::Column::OrgId.eq(org))
            .filter(recovery_code::Column::UserId.eq(user_id.as_uuid()))
            .exec(&tx)
            .await
            .map_err(db_err)?;
        let rows = recovery_hashes
            .into_iter()
            .map(|h| recovery_code::ActiveModel {
                org_id: Set(org),
                user_id: Set(user_id.as_uuid()),
                hash: Set(h.to_vec()),
                used_at: Set(None),
                created_at: Set(now),
            });
        recovery_code::Entity::insert_many(rows)
            .exec_without_returning(&tx)
            .await
            .map_err(db_err)?;
        commit(tx).await?;
        Ok(true)
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
            .filter(user::Column::OrgId.eq(ctx.org().as_uuid()))
            .filter(user::Column::Id.eq(user_id.as_uuid()))
            .filter(
                sea_orm::Condition::any()
                    .add(user::Column::TotpLastStep.is_null())
                    .add(user::Column::TotpLastStep.lt(step)),
            )
            .exec(&tx)
            .await
            .map_err(db_err)?;
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
            .filter(recovery_code::Column::OrgId.eq(ctx.org().as_uuid()))
            .filter(recovery_code::Column::UserId.eq(user_id.as_uuid()))
            .filter(recovery_code::Column::Hash.eq(hash.to_vec()))
            .filter(recovery_code::Column::UsedAt.is_null())
            .exec(&tx)
            .await
            .map_err(db_err)?;
        commit(tx).await?;
        Ok(done.rows_affected == 1)
    }
}

async fn insert_token(
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
    })
    .exec_without_returning(tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn revoke_session(
    tx: &DatabaseTransaction,
    ctx: &TenantContext,
    session_id: Uuid,
    now: OffsetDateTime,
) -> Result<bool, AuthError> {
    let done = session::Entity::update_many()
        .col_expr(session::Column::RevokedAt, Expr::value(now))
        .filter(session::Column::OrgId.eq(ctx.org().as_uuid()))
        .filter(session::Column::Id.eq(session_id))
        .filter(session::Column::RevokedAt.is_null())
        .exec(tx)
        .await
        .map_err(db_err)?;
    Ok(done.rows_affected > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_text() {
        let roles = RoleSet::of(&[Role::Admin, Role::Viewer]);
        assert_eq!(roles_to_text(roles), "admin,viewer");
        assert_eq!(roles_from_text("admin,viewer,bogus"), roles);
        assert_eq!(roles_from_text(""), RoleSet::default());
    }
}
