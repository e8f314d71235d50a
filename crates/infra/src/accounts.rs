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
use crate::db::{Fetch as _, Run as _};
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

mod resets;
pub use resets::SeaResets;
pub(crate) use resets::revoke_feeds;
use resets::{revoke_user_sessions, void_reset_codes};

mod store;

mod sessions;

mod admin;
use admin::find_user;

mod rewrap;

mod session_rows;
use session_rows::{insert_token, live_session, revoke_session};

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
    .run(tx)
    .await?;
    Ok(())
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
