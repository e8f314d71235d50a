//! Per-organization data keys: generated on first use, stored only wrapped
//! by the key-encryption key, unwrapped into memory on demand (and zeroed
//! when dropped). Deleting an organization's keys crypto-shreds its data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use carapace_phi_crypto::SecretSealer;
use carapace_phi_crypto::envelope::{DataKey, DataKeyMaterial};
use carapace_tenancy::{OrgId, StorageError, TenantContext};
use sea_orm::ActiveValue::Set;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::db::{Database, storage_error};
use crate::db::{Fetch as _, Run as _};
use crate::entity::org_key;
use crate::scope::Scoped as _;

/// An unwrapped key and when it was unwrapped.
type Cached = (Arc<DataKey>, Instant);

/// The key ring of every organization, for one process.
pub struct KeyRing {
    db: Database,
    kek: Arc<dyn SecretSealer>,
    ttl: Duration,
    keys: Mutex<HashMap<(OrgId, u32), Cached>>,
    current: Mutex<HashMap<OrgId, (u32, Instant)>>,
    listed: Mutex<HashMap<OrgId, (Vec<u32>, Instant)>>,
}

/// How long an unwrapped data key (and the knowledge of which version is
/// current) is trusted before the key provider is asked again.
pub const DEFAULT_KEY_TTL: Duration = Duration::from_secs(300);

/// How long the list of an organization's versions (which searches look
/// under) is trusted: a version made or retired by another process is
/// searched under, or no longer, within this. Rotation waits this long
/// after making a version before it moves rows to it.
pub const VERSION_LIST_TTL: Duration = Duration::from_secs(1);

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing").finish_non_exhaustive()
    }
}

fn unavailable(why: &'static str) -> StorageError {
    StorageError::Unavailable(why.into())
}

fn contexts(org: OrgId, version: u32) -> (Vec<u8>, Vec<u8>) {
    (
        format!("dek:{org}:{version}").into_bytes(),
        format!("index-key:{org}:{version}").into_bytes(),
    )
}

impl KeyRing {
    /// Keys stored in `db`, wrapped by `kek`.
    pub fn new(db: Database, kek: Arc<dyn SecretSealer>) -> Self {
        Self::with_ttl(db, kek, DEFAULT_KEY_TTL)
    }

    /// Like [`Self::new`] with an explicit cache lifetime. While the key
    /// provider is down, cached keys keep working for `ttl`; after that PHI
    /// access fails with [`StorageError::Unavailable`] (503).
    pub fn with_ttl(db: Database, kek: Arc<dyn SecretSealer>, ttl: Duration) -> Self {
        Self {
            db,
            kek,
            ttl,
            keys: Mutex::new(HashMap::new()),
            current: Mutex::new(HashMap::new()),
            listed: Mutex::new(HashMap::new()),
        }
    }

    /// The organization's current data key, created (version 1) on first use.
    pub async fn current(&self, ctx: &TenantContext) -> Result<Arc<DataKey>, StorageError> {
        let org = ctx.org();
        let known = self
            .current
            .lock()
            .ok()
            .and_then(|c| c.get(&org).copied())
            .filter(|(_, at)| at.elapsed() < self.ttl)
            .map(|(v, _)| v);
        if let Some(version) = known {
            return self.version(ctx, version).await;
        }
        let version = match self.latest_version(ctx).await? {
            Some(v) => v,
            None => self.create(ctx, 1).await?,
        };
        if let Ok(mut c) = self.current.lock() {
            c.insert(org, (version, Instant::now()));
        }
        self.version(ctx, version).await
    }

    /// A specific version of the organization's data key.
    pub async fn version(
        &self,
        ctx: &TenantContext,
        version: u32,
    ) -> Result<Arc<DataKey>, StorageError> {
        // No key: retired, shredded or never made. The data is unreadable,
        // not wrong.
        self.find_version(ctx, version)
            .await?
            .ok_or_else(|| StorageError::Internal("data key not found".into()))
    }

    /// Every data key of the organization that rows may be under, newest
    /// first (searches compute their blind index under each, so a row is
    /// found whichever version it is under, during a rotation too). The
    /// list of versions is read again after a second.
    pub async fn live(&self, ctx: &TenantContext) -> Result<Vec<Arc<DataKey>>, StorageError> {
        let org = ctx.org();
        let known = self
            .listed
            .lock()
            .ok()
            .and_then(|l| l.get(&org).cloned())
            .filter(|(_, at)| at.elapsed() < VERSION_LIST_TTL)
            .map(|(v, _)| v);
        let listed = match known {
            Some(v) => v,
            None => {
                let mut v: Vec<u32> = self.versions(ctx).await?.iter().map(|(v, _)| *v).collect();
                v.reverse();
                if let Ok(mut l) = self.listed.lock() {
                    l.insert(org, (v.clone(), Instant::now()));
                }
                v
            }
        };
        let mut keys = Vec::with_capacity(listed.len().max(1));
        for version in listed {
            // Retired since the list was read: nothing is under it.
            if let Some(key) = self.find_version(ctx, version).await? {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            keys.push(self.current(ctx).await?);
        }
        Ok(keys)
    }

    /// The organization's data-key versions and when each was made,
    /// oldest first.
    pub async fn versions(
        &self,
        ctx: &TenantContext,
    ) -> Result<Vec<(u32, OffsetDateTime)>, StorageError> {
        let tx = self.db.begin_tenant_read(ctx).await?;
        let rows = org_key::Entity::find()
            .scoped(ctx)
            .order_by_asc(org_key::Column::Version)
            .all_in(&tx)
            .await?;
        tx.commit().await.map_err(storage_error)?;
        Ok(rows
            .iter()
            .filter_map(|r| u32::try_from(r.version).ok().map(|v| (v, r.created_at)))
            .collect())
    }

    /// Deletes version `version` of the organization's keys in `tx` (the
    /// caller has checked nothing uses it; see
    /// [`crate::sealed::rotation::Rotation::retire`]); whether it existed.
    pub(crate) async fn delete_version(
        &self,
        tx: &sea_orm::DatabaseTransaction,
        ctx: &TenantContext,
        version: u32,
    ) -> Result<bool, StorageError> {
        let done = org_key::Entity::delete_many()
            .scoped(ctx)
            .filter(org_key::Column::Version.eq(i32::try_from(version).unwrap_or(i32::MAX)))
            .run(tx)
            .await?;
        Ok(done.rows_affected == 1)
    }

    /// Drops what this process remembers of a version destroyed by
    /// [`Self::delete_version`].
    pub(crate) fn forget(&self, ctx: &TenantContext, version: u32) {
        if let Ok(mut k) = self.keys.lock() {
            k.remove(&(ctx.org(), version));
        }
        if let Ok(mut l) = self.listed.lock() {
            l.remove(&ctx.org());
        }
    }

    /// Version `version` of the organization's data key; `None` when there
    /// is no such key.
    async fn find_version(
        &self,
        ctx: &TenantContext,
        version: u32,
    ) -> Result<Option<Arc<DataKey>>, StorageError> {
        let org = ctx.org();
        let cached = self
            .keys
            .lock()
            .ok()
            .and_then(|k| k.get(&(org, version)).cloned());
        if let Some((key, at)) = cached
            && at.elapsed() < self.ttl
        {
            return Ok(Some(key));
        }
        let tx = self.db.begin_tenant_read(ctx).await?;
        let row = org_key::Entity::find()
            .in_org(org)
            .filter(org_key::Column::Version.eq(i32::try_from(version).unwrap_or(i32::MAX)))
            .one_in(&tx)
            .await?;
        tx.commit().await.map_err(storage_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let (dek_ctx, index_ctx) = contexts(org, version);
        let dek = self
            .kek
            .open(&dek_ctx, &row.wrapped_dek)
            .await
            .map_err(|_| unavailable("key provider cannot unwrap"))?;
        let index = self
            .kek
            .open(&index_ctx, &row.wrapped_index_key)
            .await
            .map_err(|_| unavailable("key provider cannot unwrap"))?;
        let (dek, index) = (Zeroizing::new(dek), Zeroizing::new(index));
        let material = DataKeyMaterial {
            dek: Zeroizing::new(
                dek.as_slice()
                    .try_into()
                    .map_err(|_| StorageError::Internal("bad key".into()))?,
            ),
            index_root: Zeroizing::new(
                index
                    .as_slice()
                    .try_into()
                    .map_err(|_| StorageError::Internal("bad key".into()))?,
            ),
        };
        let key = Arc::new(DataKey::new(version, &material));
        if let Ok(mut k) = self.keys.lock() {
            k.insert((org, version), (key.clone(), Instant::now()));
        }
        Ok(Some(key))
    }

    /// Starts a new data-key version for the organization and makes it
    /// current here; returns it. Rows move to it with
    /// [`crate::sealed::rotation::Rotation`].
    pub async fn rotate(&self, ctx: &TenantContext) -> Result<u32, StorageError> {
        let latest = self.latest_version(ctx).await?;
        if let Some(v) = latest {
            // Proves this KEK is the one in use: never mix keys under two KEKs.
            self.version(ctx, v).await?;
        }
        let next = latest.unwrap_or(0) + 1;
        let version = self.create(ctx, next).await?;
        if let Ok(mut c) = self.current.lock() {
            c.insert(ctx.org(), (version, Instant::now()));
        }
        if let Ok(mut l) = self.listed.lock() {
            l.remove(&ctx.org());
        }
        Ok(version)
    }

    /// Re-wraps every data key of the organization from this ring's KEK to
    /// `new_kek` (KEK rotation). Returns how many keys were re-wrapped.
    pub async fn rewrap(
        &self,
        ctx: &TenantContext,
        new_kek: &dyn SecretSealer,
    ) -> Result<u64, StorageError> {
        let tx = self.db.begin_tenant(ctx).await?;
        let rows = org_key::Entity::find().scoped(ctx).all_in(&tx).await?;
        let mut done = 0;
        for row in rows {
            let version = u32::try_from(row.version)
                .map_err(|_| StorageError::Internal("bad version".into()))?;
            let (dek_ctx, index_ctx) = contexts(ctx.org(), version);
            // Already under the new KEK (an interrupted run): resume past it.
            if new_kek.open(&dek_ctx, &row.wrapped_dek).await.is_ok() {
                continue;
            }
            let dek = Zeroizing::new(
                self.kek
                    .open(&dek_ctx, &row.wrapped_dek)
                    .await
                    .map_err(|_| unavailable("old KEK cannot unwrap"))?,
            );
            let index = Zeroizing::new(
                self.kek
                    .open(&index_ctx, &row.wrapped_index_key)
                    .await
                    .map_err(|_| unavailable("old KEK cannot unwrap"))?,
            );
            let update = org_key::ActiveModel {
                org_id: Set(row.org_id),
                version: Set(row.version),
                wrapped_dek: Set(new_kek
                    .seal(&dek_ctx, &dek)
                    .await
                    .map_err(|_| unavailable("new KEK cannot wrap"))?),
                wrapped_index_key: Set(new_kek
                    .seal(&index_ctx, &index)
                    .await
                    .map_err(|_| unavailable("new KEK cannot wrap"))?),
                created_at: sea_orm::ActiveValue::NotSet,
            };
            sea_orm::ActiveModelTrait::update(update, &tx)
                .await
                .map_err(storage_error)?;
            done += 1;
        }
        // All of the org's keys move together, or none do.
        tx.commit().await.map_err(storage_error)?;
        Ok(done)
    }

    /// Destroys every data key of the organization (crypto-shredding): its
    /// ciphertexts can never be decrypted again. Returns how many went.
    pub async fn shred(&self, ctx: &TenantContext) -> Result<u64, StorageError> {
        let tx = self.db.begin_tenant(ctx).await?;
        let done = org_key::Entity::delete_many().scoped(ctx).run(&tx).await?;
        tx.commit().await.map_err(storage_error)?;
        if let Ok(mut k) = self.keys.lock() {
            k.retain(|(org, _), _| *org != ctx.org());
        }
        if let Ok(mut c) = self.current.lock() {
            c.remove(&ctx.org());
        }
        if let Ok(mut l) = self.listed.lock() {
            l.remove(&ctx.org());
        }
        Ok(done.rows_affected)
    }

    async fn latest_version(&self, ctx: &TenantContext) -> Result<Option<u32>, StorageError> {
        let tx = self.db.begin_tenant_read(ctx).await?;
        let row = org_key::Entity::find()
            .scoped(ctx)
            .order_by_desc(org_key::Column::Version)
            .one_in(&tx)
            .await?;
        tx.commit().await.map_err(storage_error)?;
        Ok(row.and_then(|r| u32::try_from(r.version).ok()))
    }

    /// Creates (and commits) key `version`; if another process created it
    /// first, theirs is used.
    async fn create(&self, ctx: &TenantContext, version: u32) -> Result<u32, StorageError> {
        let material = DataKeyMaterial::generate();
        let (dek_ctx, index_ctx) = contexts(ctx.org(), version);
        let wrapped_dek = self
            .kek
            .seal(&dek_ctx, &*material.dek)
            .await
            .map_err(|_| unavailable("key provider cannot wrap"))?;
        let wrapped_index_key = self
            .kek
            .seal(&index_ctx, &*material.index_root)
            .await
            .map_err(|_| unavailable("key provider cannot wrap"))?;
        let tx = self.db.begin_tenant(ctx).await?;
        // A deleted organization never gets a key again: nothing new can be
        // written for it, and nothing shredded comes back.
        if !crate::organizations::is_live(&tx, ctx.org()).await? {
            return Err(StorageError::Constraint(
                "organization deleted or unknown".into(),
            ));
        }
        let inserted = org_key::Entity::insert(org_key::ActiveModel {
            org_id: Set(ctx.org().as_uuid()),
            version: Set(i32::try_from(version).unwrap_or(i32::MAX)),
            wrapped_dek: Set(wrapped_dek),
            wrapped_index_key: Set(wrapped_index_key),
            created_at: Set(OffsetDateTime::now_utc()),
        })
        .exec_without_returning(&tx)
        .await;
        match inserted {
            Ok(_) => {
                tx.commit().await.map_err(storage_error)?;
                Ok(version)
            }
            Err(e) => match storage_error(e) {
                // A concurrent creator won, or the organization does not exist.
                StorageError::Constraint(c) => {
                    drop(tx);
                    self.latest_version(ctx)
                        .await?
                        .ok_or(StorageError::Constraint(c))
                }
                other => Err(other),
            },
        }
    }
}
