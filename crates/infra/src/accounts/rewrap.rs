//! Key-encryption key rotation for what is sealed under the KEK itself:
//! the TOTP seeds ([`carapace_auth::local::mfa`] seals each under the
//! organization and user it belongs to).

use carapace_auth::local::UserId;
use carapace_auth::local::mfa::seed_context;
use carapace_phi_crypto::SecretSealer;
use carapace_tenancy::{StorageError, TenantContext};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _};

use super::SeaAccounts;
use crate::db::{Fetch as _, Run as _, storage_error};
use crate::entity::user;
use crate::scope::Scoped as _;

fn unavailable(what: &'static str) -> StorageError {
    StorageError::Unavailable(what.into())
}

impl SeaAccounts {
    /// Re-wraps every TOTP seed of `ctx`'s organization from `old` to `new`
    /// (KEK rotation: `carapace keys rotate --kek`), in one transaction;
    /// returns how many were re-wrapped. A seed already under `new` (an
    /// interrupted run) is passed over; a seed changed meanwhile (a user
    /// enrolling again) is left as the user wrote it. Fails, changing
    /// nothing, if `old` cannot open a seed `new` cannot either.
    pub async fn rewrap_totp_seeds(
        &self,
        ctx: &TenantContext,
        old: &dyn SecretSealer,
        new: &dyn SecretSealer,
    ) -> Result<u64, StorageError> {
        let tx = self.db.begin_tenant(ctx).await?;
        let rows = user::Entity::find()
            .scoped(ctx)
            .filter(user::Column::TotpSeed.is_not_null())
            .order_by_asc(user::Column::Id)
            .all_in(&tx)
            .await?;
        let mut done = 0;
        for row in rows {
            let Some(sealed) = row.totp_seed else {
                continue;
            };
            let context = seed_context(ctx, UserId::from_uuid(row.id));
            if new.open(&context, &sealed).await.is_ok() {
                continue;
            }
            let seed = zeroize::Zeroizing::new(
                old.open(&context, &sealed)
                    .await
                    .map_err(|_| unavailable("the old KEK cannot open a TOTP seed"))?,
            );
            let resealed = new
                .seal(&context, &seed)
                .await
                .map_err(|_| unavailable("the new KEK cannot seal a TOTP seed"))?;
            let moved = user::Entity::update_many()
                .col_expr(user::Column::TotpSeed, Expr::value(Some(resealed)))
                .scoped(ctx)
                .filter(user::Column::Id.eq(row.id))
                .filter(user::Column::TotpSeed.eq(sealed))
                .run(&tx)
                .await?;
            done += moved.rows_affected;
        }
        tx.commit().await.map_err(storage_error)?;
        Ok(done)
    }
}
