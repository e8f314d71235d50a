//! `Idempotency-Key` records (IETF httpapi idempotency-key draft) over
//! `idempotency_keys`: one row per organization and hashed key (the key
//! salted with the principal, so keys never collide across callers and are
//! never stored as sent), the fingerprint of the first request, and its
//! outcome:
//!
//! - `pending`: the first request is running;
//! - `committed`: its write committed (set in the write's own transaction
//!   by [`crate::audit::append`], from the audit event that records it);
//!   the request is finishing;
//! - `lost`: it committed but ended without an answer to keep (a 5xx
//!   after the commit, or its server died): a retry must not do the work
//!   again;
//! - `complete`: its response, sealed under the organization's data key
//!   (it may hold PHI), is what every retry gets for 24 hours.

use std::sync::Arc;

use carapace_audit::{AuditEvent, Outcome};
use carapace_phi_crypto::envelope::Binding;
use carapace_tenancy::{StorageError, TenantContext};
use sea_orm::ActiveValue::Set;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait as _, ConnectionTrait, EntityTrait as _, QueryFilter as _};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::db::{Database, storage_error};
use crate::db::{Fetch as _, Run as _};
use crate::entity::idempotency_key;
use crate::keys::KeyRing;
use crate::scope::Scoped as _;

/// How long a key is remembered.
pub const KEY_TTL: Duration = Duration::hours(24);
/// A `pending` or `committed` record older than this belongs to a request
/// that died with its server (every request ends long before): it no
/// longer blocks (pending: the key is free; committed: the answer is lost).
const STALE_PENDING: Duration = Duration::seconds(60);

/// A response kept for replay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// The status code.
    pub status: u16,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
    /// Its `Location`.
    pub location: Option<String>,
    /// The body (base64 in storage; sealed as a whole).
    #[serde(with = "b64")]
    pub body: Vec<u8>,
}

mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize as _, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

/// What a request with a key meets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Begin {
    /// The key is new (now `pending`): do the work.
    New,
    /// The same request was answered: send this again.
    Replay(StoredResponse),
    /// The key was used with another request (method, path or body).
    Mismatch,
    /// The first request with the key is still running.
    InProgress,
    /// The first request's write committed but its answer was lost (it
    /// ended, or its server died, without one); this is what it created.
    Committed {
        /// The kind of resource (`patient`, `appointment`, …).
        resource_type: Option<String>,
        /// Its id.
        resource_id: Option<String>,
    },
}

/// Idempotency records.
#[derive(Clone)]
pub struct SeaIdempotency {
    db: Database,
    keys: Arc<KeyRing>,
}

impl std::fmt::Debug for SeaIdempotency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeaIdempotency").finish_non_exhaustive()
    }
}

fn binding<'a>(org: &'a [u8; 16], key_hash: &'a [u8; 32]) -> Binding<'a> {
    Binding {
        org,
        table: crate::sealed::idempotency_keys::TABLE,
        column: crate::sealed::idempotency_keys::RESPONSE,
        row: key_hash[..16].try_into().unwrap_or(&[0; 16]),
    }
}

impl SeaIdempotency {
    /// Records in `db`; responses sealed with the organizations' keys.
    pub fn new(db: Database, keys: Arc<KeyRing>) -> Self {
        Self { db, keys }
    }

    /// Claims `key_hash` for a request fingerprinted `request_hash`, or
    /// says what an earlier request with the key left.
    pub async fn begin(
        &self,
        ctx: &TenantContext,
        key_hash: [u8; 32],
        request_hash: [u8; 32],
        now: OffsetDateTime,
    ) -> Result<Begin, StorageError> {
        let org = ctx.org().as_uuid();
        let tx = self.db.begin_tenant(ctx).await?;
        let found = idempotency_key::Entity::find()
            .in_org(org)
            .filter(idempotency_key::Column::KeyHash.eq(key_hash.to_vec()))
            .one_in(&tx)
            .await?;
        let stale = |r: &idempotency_key::Model| r.created_at <= now - STALE_PENDING;
        let reusable = found
            .as_ref()
            .is_some_and(|r| r.expires_at <= now || (r.state == "pending" && stale(r)));
        let begin = match found {
            Some(row) if !reusable => {
                if row.request_hash != request_hash {
                    Begin::Mismatch
                } else {
                    // Pending, or committed and still finishing: the first
                    // request is running.
                    let finishing =
                        row.state == "pending" || (row.state == "committed" && !stale(&row));
                    match (row.state.as_str(), row.response) {
                        ("complete", Some(sealed)) => {
                            Begin::Replay(self.open(ctx, &key_hash, &sealed).await?)
                        }
                        _ if finishing => Begin::InProgress,
                        _ => Begin::Committed {
                            resource_type: row.resource_type,
                            resource_id: row.resource_id,
                        },
                    }
                }
            }
            _ => {
                if reusable {
                    idempotency_key::Entity::delete_many()
                        .in_org(org)
                        .filter(idempotency_key::Column::KeyHash.eq(key_hash.to_vec()))
                        .run(&tx)
                        .await?;
                }
                let inserted = idempotency_key::Entity::insert(idempotency_key::ActiveModel {
                    org_id: Set(org),
                    key_hash: Set(key_hash.to_vec()),
                    request_hash: Set(request_hash.to_vec()),
                    state: Set("pending".into()),
                    status: Set(None),
                    response: Set(None),
                    resource_type: Set(None),
                    resource_id: Set(None),
                    created_at: Set(now),
                    expires_at: Set(now + KEY_TTL),
                })
                .on_conflict_do_nothing()
                .exec_without_returning(&tx)
                .await
                .map_err(storage_error)?;
                match inserted {
                    sea_orm::TryInsertResult::Inserted(1) => Begin::New,
                    // Another request with the key got there first.
                    _ => Begin::InProgress,
                }
            }
        };
        tx.commit().await.map_err(storage_error)?;
        Ok(begin)
    }

    /// Stores the response of the request that holds `key_hash` (sealed):
    /// retries get it from now on.
    pub async fn complete(
        &self,
        ctx: &TenantContext,
        key_hash: [u8; 32],
        response: &StoredResponse,
    ) -> Result<(), StorageError> {
        let org = ctx.org();
        let plain =
            serde_json::to_vec(response).map_err(|e| StorageError::Internal(Box::new(e)))?;
        let key = self.keys.current(ctx).await?;
        let sealed = key
            .encrypt(&binding(org.as_uuid().as_bytes(), &key_hash), &plain)
            .map_err(|e| StorageError::Internal(Box::new(e)))?;
        let tx = self.db.begin_tenant(ctx).await?;
        idempotency_key::Entity::update_many()
            .col_expr(idempotency_key::Column::State, Expr::value("complete"))
            .col_expr(
                idempotency_key::Column::Status,
                Expr::value(i32::from(response.status)),
            )
            .col_expr(idempotency_key::Column::Response, Expr::value(Some(sealed)))
            .in_org(org)
            .filter(idempotency_key::Column::KeyHash.eq(key_hash.to_vec()))
            .run(&tx)
            .await?;
        tx.commit().await.map_err(storage_error)
    }

    /// The request holding `key_hash` ended without a response to keep:
    /// unless its write committed, the key is free again (a retry does the
    /// work, nothing having been done); if it did, the record says the
    /// answer was lost.
    pub async fn release(
        &self,
        ctx: &TenantContext,
        key_hash: [u8; 32],
    ) -> Result<(), StorageError> {
        let org = ctx.org().as_uuid();
        let tx = self.db.begin_tenant(ctx).await?;
        idempotency_key::Entity::delete_many()
            .in_org(org)
            .filter(idempotency_key::Column::KeyHash.eq(key_hash.to_vec()))
            .filter(idempotency_key::Column::State.eq("pending"))
            .run(&tx)
            .await?;
        idempotency_key::Entity::update_many()
            .col_expr(idempotency_key::Column::State, Expr::value("lost"))
            .in_org(org)
            .filter(idempotency_key::Column::KeyHash.eq(key_hash.to_vec()))
            .filter(idempotency_key::Column::State.eq("committed"))
            .run(&tx)
            .await?;
        tx.commit().await.map_err(storage_error)
    }

    async fn open(
        &self,
        ctx: &TenantContext,
        key_hash: &[u8; 32],
        sealed: &[u8],
    ) -> Result<StoredResponse, StorageError> {
        let version = carapace_phi_crypto::envelope::key_version(sealed)
            .ok_or_else(|| StorageError::Internal("malformed sealed response".into()))?;
        let key = self.keys.version(ctx, version).await?;
        let plain = key
            .decrypt(&binding(ctx.org().as_uuid().as_bytes(), key_hash), sealed)
            .map_err(|e| StorageError::Internal(Box::new(e)))?;
        serde_json::from_slice(&plain).map_err(|e| StorageError::Internal(Box::new(e)))
    }
}

/// Marks the idempotency record of the request that `events` record as
/// `committed`, in their (the write's) transaction: the first allowed event
/// that carries a key names what was done. Called by [`crate::audit::append`].
pub(crate) async fn mark_committed<C: ConnectionTrait>(
    conn: &C,
    events: &[AuditEvent],
) -> Result<(), StorageError> {
    let mut marked: Vec<[u8; 32]> = Vec::new();
    for event in events {
        let Some(key_hash) = event.origin.idempotency_key else {
            continue;
        };
        if event.outcome != Outcome::Allowed || marked.contains(&key_hash) {
            continue;
        }
        marked.push(key_hash);
        idempotency_key::Entity::update_many()
            .col_expr(idempotency_key::Column::State, Expr::value("committed"))
            .col_expr(
                idempotency_key::Column::ResourceType,
                Expr::value(Some(event.resource_type.clone())),
            )
            .col_expr(
                idempotency_key::Column::ResourceId,
                Expr::value(event.resource_id.clone()),
            )
            .in_org(event.org)
            .filter(idempotency_key::Column::KeyHash.eq(key_hash.to_vec()))
            .filter(idempotency_key::Column::State.eq("pending"))
            .run(conn)
            .await?;
    }
    Ok(())
}
