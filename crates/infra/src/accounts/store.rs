//! Local accounts ([`AccountStore`]) and the addresses each account signs in from ([`AddressThrottle`]).

use super::*;

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
            .one_in(&tx)
            .await?;
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
            .run(&tx)
            .await?
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
            .one_in(&tx)
            .await?;
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
        .run(&tx)
        .await?;
        // A few addresses per account: the oldest beyond them are dropped.
        let known: Vec<Vec<u8>> = login_address::Entity::find()
            .select_only()
            .column(login_address::Column::AddressHash)
            .in_org(org)
            .filter(login_address::Column::UserId.eq(user_id.as_uuid()))
            .order_by_desc(login_address::Column::LastSuccessAt)
            .into_tuple()
            .all_in(&tx)
            .await?;
        let stale: Vec<Vec<u8>> = known.into_iter().skip(KNOWN_ADDRESSES).collect();
        if !stale.is_empty() {
            login_address::Entity::delete_many()
                .in_org(org)
                .filter(login_address::Column::UserId.eq(user_id.as_uuid()))
                .filter(login_address::Column::AddressHash.is_in(stale))
                .run(&tx)
                .await?;
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
