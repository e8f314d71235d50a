//! Sealing one PHI field: AES-256-GCM under the organization's data key,
//! bound to its organization, table, column and row, so a ciphertext moved
//! anywhere else fails to open. Every repository's PHI columns go through
//! here.

use std::collections::HashMap;
use std::sync::Arc;

use carapace_phi_crypto::envelope::{Binding, DataKey};
use carapace_tenancy::{StorageError, TenantContext};
use uuid::Uuid;

use crate::keys::KeyRing;
use crate::scope::OrgKey;

/// Where a sealed value lives.
#[derive(Clone, Copy, Debug)]
struct Place<'a> {
    org: Uuid,
    table: &'a str,
    column: &'a str,
    row: Uuid,
}

/// A value that does not open for its place: an error, never wrong data.
pub(crate) fn integrity() -> StorageError {
    StorageError::Internal("stored value failed authentication".into())
}

/// The sealed columns of one row: its data key, organization, table and
/// row id. Every repository seals and opens PHI through this, with one
/// signature each: [`Sealer::seal`] and [`Sealer::open`].
#[derive(Clone, Copy)]
pub(crate) struct Sealer<'a> {
    key: &'a DataKey,
    org: Uuid,
    table: &'a str,
    row: Uuid,
}

impl<'a> Sealer<'a> {
    /// Row `row` of `table` in organization `org`, under `key`.
    pub(crate) fn new(key: &'a DataKey, org: impl OrgKey, table: &'a str, row: Uuid) -> Self {
        Self {
            key,
            org: org.org_uuid(),
            table,
            row,
        }
    }

    fn place<'c>(&self, column: &'c str) -> Place<'c>
    where
        'a: 'c,
    {
        Place {
            org: self.org,
            table: self.table,
            column,
            row: self.row,
        }
    }

    /// Encrypts `plain` for `column` of this row.
    pub(crate) fn seal(&self, column: &str, plain: &str) -> Result<Vec<u8>, StorageError> {
        seal(self.key, self.place(column), plain.as_bytes())
    }

    /// Decrypts the text sealed in `column` of this row.
    pub(crate) fn open(&self, column: &str, sealed: &[u8]) -> Result<String, StorageError> {
        open_text(self.key, self.place(column), sealed)
    }

    /// Encrypts the bytes `plain` (audio) for `column` of this row.
    pub(crate) fn seal_bytes(&self, column: &str, plain: &[u8]) -> Result<Vec<u8>, StorageError> {
        seal(self.key, self.place(column), plain)
    }

    /// Decrypts the bytes sealed in `column` of this row.
    pub(crate) fn open_bytes(&self, column: &str, sealed: &[u8]) -> Result<Vec<u8>, StorageError> {
        open_bytes(self.key, self.place(column), sealed)
    }
}

/// Encrypts `plain` for `place`.
fn seal(key: &DataKey, place: Place<'_>, plain: &[u8]) -> Result<Vec<u8>, StorageError> {
    let (org, row) = (place.org.into_bytes(), place.row.into_bytes());
    key.encrypt(
        &Binding {
            org: &org,
            table: place.table,
            column: place.column,
            row: &row,
        },
        plain,
    )
    .map_err(|_| StorageError::Unavailable("encryption failed".into()))
}

/// Decrypts a value sealed for `place`.
fn open_bytes(key: &DataKey, place: Place<'_>, sealed: &[u8]) -> Result<Vec<u8>, StorageError> {
    let (org, row) = (place.org.into_bytes(), place.row.into_bytes());
    let plain = key
        .decrypt(
            &Binding {
                org: &org,
                table: place.table,
                column: place.column,
                row: &row,
            },
            sealed,
        )
        .map_err(|_| integrity())?;
    Ok(plain.to_vec())
}

/// Decrypts a text value sealed for `place`.
fn open_text(key: &DataKey, place: Place<'_>, sealed: &[u8]) -> Result<String, StorageError> {
    String::from_utf8(open_bytes(key, place, sealed)?).map_err(|_| integrity())
}

/// The data keys of one organization, each version fetched once.
pub(crate) struct KeyVersions<'a> {
    ring: &'a KeyRing,
    ctx: &'a TenantContext,
    seen: HashMap<i32, Arc<DataKey>>,
}

impl<'a> KeyVersions<'a> {
    pub(crate) fn new(ring: &'a KeyRing, ctx: &'a TenantContext) -> Self {
        Self {
            ring,
            ctx,
            seen: HashMap::new(),
        }
    }

    /// The key of stored `version`.
    pub(crate) async fn get(&mut self, version: i32) -> Result<Arc<DataKey>, StorageError> {
        if let Some(k) = self.seen.get(&version) {
            return Ok(k.clone());
        }
        let v = u32::try_from(version).map_err(|_| integrity())?;
        let k = self.ring.version(self.ctx, v).await?;
        self.seen.insert(version, k.clone());
        Ok(k)
    }

    /// `open` applied to each of `rows` with the key of the row's stored
    /// `version`: the one loop every repository's reads decrypt with.
    pub(crate) async fn open_each<R, T, E>(
        &mut self,
        rows: impl IntoIterator<Item = R>,
        version: impl Fn(&R) -> i32,
        mut open: impl FnMut(&DataKey, R) -> Result<T, E>,
    ) -> Result<Vec<T>, E>
    where
        E: From<StorageError>,
    {
        let rows = rows.into_iter();
        let mut out = Vec::with_capacity(rows.size_hint().0);
        for row in rows {
            let key = self.get(version(&row)).await?;
            out.push(open(&key, row)?);
        }
        Ok(out)
    }
}
