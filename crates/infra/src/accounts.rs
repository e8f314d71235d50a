//! Local accounts, sessions and refresh tokens over SeaORM, each call in
//! one tenant transaction. Security events are written in the same
//! transaction as the change they describe.

use carapace_auth::local::admin::{AdminChange, AdminStore};
use carapace_auth::local::mfa::{MfaStore, TotpState};
use carapace_auth::local::{
    Account, AccountStore, AddressState, AddressThrottle, Email, LoginState, ResetStore, Rotation,
    SessionId, SessionLimits, SessionStore, UserId, session_alive, within_grace,
};
use carapace_auth::{AuthError, Role, RoleSet};
use carapace_tenancy::{OrgId, TenantContext};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{Database, storage_error};
use crate::entity::{
    calendar_feed, login_address, login_address_failure, mfa_challenge_spent, password_reset,
    recovery_code, refresh_token, security_event, session, user,
};
use crate::scope::Scoped as _;

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
    ) -> Result<Option<UserId>, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let org = ctx.org().as_uuid();
        let claimed = password_reset::Entity::update_many()
            .col_expr(password_reset::Column::UsedAt, Expr::value(now))
            .in_org(org)
            .filter(password_reset::Column::Hash.eq(token_hash.to_vec()))
            .filter(password_reset::Column::UsedAt.is_null())
            .filter(password_reset::Column::ExpiresAt.gt(now))
            .exec(&tx)
            .await
            .map_err(db_err)?
            .rows_affected;
        if claimed == 0 {
            return Ok(None);
        }
        let Some(reset) = password_reset::Entity::find()
            .in_org(org)
            .filter(password_reset::Column::Hash.eq(token_hash.to_vec()))
            .one(&tx)
            .await
            .map_err(db_err)?
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
            .exec(&tx)
            .await
            .map_err(db_err)?;
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
async fn void_reset_codes(
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
        .exec(tx)
        .await
        .map_err(db_err)?
        .rows_affected)
}

/// Ends every live session of `user_id` but `keep`.
async fn revoke_user_sessions(
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
    Ok(update.exec(tx).await.map_err(db_err)?.rows_affected)
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
        .exec(tx)
        .await
        .map_err(db_err)?
        .rows_affected)
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

    pub(crate) fn db(&self) -> &Database {
        &self.db
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
            throttled_until: r.locked_until,
            admin_locked: r.admin_locked,
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
            admin_locked: Set(false),
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
            .scoped(ctx)
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

    async fn swap_login_state(
        &self,
        ctx: &TenantContext,
        user_id: UserId,
        expected: LoginState,
        next: LoginState,
    ) -> Result<bool, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        let done = user::Entity::update_many()
            .col_expr(user::Column::FailedLogins, Expr::value(count(next.failed)))
            .col_expr(user::Column::LockedUntil, Expr::value(next.throttled_until))
            .col_expr(
                user::Column::UpdatedAt,
                Expr::value(OffsetDateTime::now_utc()),
            )
            .scoped(ctx)
            .filter(user::Column::Id.eq(user_id.as_uuid()))
            .filter(user::Column::FailedLogins.eq(count(expected.failed)))
            .exec(&tx)
            .await
            .map_err(db_err)?
            .rows_affected;
        if done == 1
            && next.failed >= carapace_auth::local::FREE_FAILURES
            && expected.failed < carapace_auth::local::FREE_FAILURES
        {
            record_event(
                &tx,
                ctx,
                events::ACCOUNT_LOCKED,
                Some(user_id.to_string()),
                OffsetDateTime::now_utc(),
            )
            .await?;
        }
        commit(tx).await?;
        Ok(done == 1)
    }

    async fn is_known_address(
        &self,
        ctx: &TenantContext,
        user_id: UserId,
        address: [u8; 32],
        since: OffsetDateTime,
    ) -> Result<bool, AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let found = login_address::Entity::find()
            .scoped(ctx)
            .filter(login_address::Column::UserId.eq(user_id.as_uuid()))
            .filter(login_address::Column::AddressHash.eq(address.to_vec()))
            .filter(login_address::Column::LastSuccessAt.gte(since))
            .one(&tx)
            .await
            .map_err(db_err)?;
        commit(tx).await?;
        Ok(found.is_some())
    }

    async fn remember_address(
        &self,
        ctx: &TenantContext,
        user_id: UserId,
        address: [u8; 32],
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        let tx = begin(&self.db, ctx).await?;
        let org = ctx.org().as_uuid();
        login_address::Entity::insert(login_address::ActiveModel {
            org_id: Set(org),
            user_id: Set(user_id.as_uuid()),
            address_hash: Set(address.to_vec()),
            last_success_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([
                login_address::Column::OrgId,
                login_address::Column::UserId,
                login_address::Column::AddressHash,
            ])
            .update_column(login_address::Column::LastSuccessAt)
            .to_owned(),
        )
        .exec_without_returning(&tx)
        .await
        .map_err(db_err)?;
        // A few addresses per account: the oldest beyond them are dropped.
        let known: Vec<Vec<u8>> = login_address::Entity::find()
            .select_only()
            .column(login_address::Column::AddressHash)
            .in_org(org)
            .filter(login_address::Column::UserId.eq(user_id.as_uuid()))
            .order_by_desc(login_address::Column::LastSuccessAt)
            .into_tuple()
            .all(&tx)
            .await
            .map_err(db_err)?;
        let stale: Vec<Vec<u8>> = known.into_iter().skip(KNOWN_ADDRESSES).collect();
        if !stale.is_empty() {
            login_address::Entity::delete_many()
                .in_org(org)
                .filter(login_address::Column::UserId.eq(user_id.as_uuid()))
                .filter(login_address::Column::AddressHash.is_in(stale))
                .exec(&tx)
                .await
                .map_err(db_err)?;
        }
        commit(tx).await
    }
}

/// Client addresses remembered per account.
const KNOWN_ADDRESSES: usize = 8;

impl AddressThrottle for SeaAccounts {
    async fn address_state(&self, address: [u8; 32]) -> Result<AddressState, AuthError> {
        // One statement on the pool, within the request's wait budget.
        let row = crate::db::wait::bounded(
            login_address_failure::Entity::find_by_id(address.to_vec()).one(self.db.conn()),
        )
        .await
        .map_err(AuthError::Storage)?;
        Ok(row.map_or_else(AddressState::default, |r| AddressState {
            failures: u32::try_from(r.failures).unwrap_or(0),
            last_failure: Some(r.last_failure_at),
            throttled_until: r.throttled_until,
        }))
    }

    async fn record_address_failure(
        &self,
        address: [u8; 32],
        now: OffsetDateTime,
    ) -> Result<(), AuthError> {
        let next = self.address_state(address).await?.after_failure(now);
        let upsert = login_address_failure::Entity::insert(login_address_failure::ActiveModel {
            address_hash: Set(address.to_vec()),
            failures: Set(i32::try_from(next.failures).unwrap_or(i32::MAX)),
            last_failure_at: Set(now),
            throttled_until: Set(next.throttled_until),
        })
        .on_conflict(
            OnConflict::column(login_address_failure::Column::AddressHash)
                .update_columns([
                    login_address_failure::Column::Failures,
                    login_address_failure::Column::LastFailureAt,
                    login_address_failure::Column::ThrottledUntil,
                ])
                .to_owned(),
        )
        .exec_without_returning(self.db.conn());
        crate::db::wait::bounded(upsert)
            .await
            .map_err(AuthError::Storage)?;
        Ok(())
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
            .exec(&tx)
            .await
            .map_err(db_err)?
            .rows_affected;
        let token = refresh_token::Entity::find()
            .in_org(org)
            .filter(refresh_token::Column::Hash.eq(presented.to_vec()))
            .one(&tx)
            .await
            .map_err(db_err)?;
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
            .exec(&tx)
            .await
            .map_err(db_err)?;
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
            .scoped(ctx)
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
            .scoped(ctx)
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
        };
        if update.exec(&tx).await.map_err(db_err)?.rows_affected == 0 {
            return Ok(false);
        }
        if change.ends_sessions() {
            revoke_user_sessions(&tx, ctx, user_id.as_uuid(), None, now).await?;
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

async fn find_user(
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
            .exec(&tx)
            .await
            .map_err(db_err)?;
        if done.rows_affected != 1 {
            return Ok(false);
        }
        recovery_code::Entity::delete_many()
            .in_org(org)
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
        .exec_without_returning(&tx)
        .await
        .map_err(db_err)?;
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
            .scoped(ctx)
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
        successor: Set(None),
    })
    .exec_without_returning(tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// The session `session_id`, its active account and its `amr`, if the
/// session is neither revoked nor past its limits at `now`.
async fn live_session(
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
        .one(tx)
        .await
        .map_err(db_err)?
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

async fn revoke_session(
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
