//! Data-key rotation over the registry: one loop for every sealed table.
//!
//! [`Rotation::reencrypt_batch`] reads up to `batch` of an organization's
//! rows of one table under a version older than the current one (locked
//! `FOR UPDATE` on PostgreSQL; SQLite's writer excludes everyone), opens
//! each sealed column under its row's version and seals it under the
//! current one with the same binding, recomputes the blind indexes, and
//! sets the row's version, leaving every other column (`updated_at`
//! included) alone. The filter on the version makes an interrupted run
//! resume where it stopped. [`Rotation::usage`] counts rows per version,
//! and [`Rotation::retire`] destroys a version that nothing uses.
//!
//! The statements are plain SQL built from the registry's (constant)
//! names, with `$n` placeholders on PostgreSQL and `?` on SQLite.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use carapace_phi_crypto::envelope::{Binding, DataKey, key_version};
use carapace_tenancy::{StorageError, TenantContext};
use sea_orm::{
    ConnectionTrait as _, DatabaseTransaction, DbBackend, QueryResult, Statement, Value,
};
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{BindingName, KeyPart, REGISTRY, RowBinding, SealedTable, VersionAt, blind_index};
use crate::db::{Backend, Database, storage_error};
use crate::fields::{KeyVersions, integrity};
use crate::keys::{DEFAULT_KEY_TTL, KeyRing};

/// How long after a newer version was created an older one may be
/// retired: a server keeps the version it knew as current for up to its
/// key cache's lifetime ([`DEFAULT_KEY_TTL`]), and a request that sealed
/// with it may still be finishing.
pub const RETIRE_AFTER: Duration = Duration::from_secs(DEFAULT_KEY_TTL.as_secs() + 60);

/// Rows of one table by data-key version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableUsage {
    /// The table.
    pub table: &'static str,
    /// Rows per version (versions without rows are absent).
    pub rows: BTreeMap<u32, u64>,
}

/// What [`Rotation::retire`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Retire {
    /// The version's wrapped keys are destroyed.
    Retired,
    /// The organization has no such version.
    Unknown,
    /// It is the current version.
    Current,
    /// Rows still use it: the first table that does, and how many rows.
    InUse {
        /// The table.
        table: &'static str,
        /// Its rows under the version.
        rows: u64,
    },
    /// A newer version is too recent: a server may still seal with this
    /// one until `until`.
    TooRecent {
        /// When it may be retired.
        until: OffsetDateTime,
    },
}

/// Rotation of organizations' data keys over every registered table.
#[derive(Clone, Debug)]
pub struct Rotation {
    db: Database,
    keys: Arc<KeyRing>,
}

/// A statement under construction: text and values, placeholders in the
/// backend's syntax.
struct Sql {
    backend: DbBackend,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    fn new(backend: Backend) -> Self {
        Self {
            backend: match backend {
                Backend::Postgres => DbBackend::Postgres,
                Backend::Sqlite => DbBackend::Sqlite,
            },
            text: String::new(),
            values: Vec::new(),
        }
    }

    fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// A quoted identifier (the registry's names only).
    fn ident(&mut self, name: &str) -> &mut Self {
        self.text.push('"');
        self.text.push_str(name);
        self.text.push('"');
        self
    }

    fn bind(&mut self, value: Value) -> &mut Self {
        self.values.push(value);
        if self.backend == DbBackend::Postgres {
            self.text.push_str(&format!("${}", self.values.len()));
        } else {
            self.text.push('?');
        }
        self
    }

    /// The row's version: its column, or the ciphertext header's 4 bytes.
    fn version_expr(&mut self, t: &SealedTable) -> &mut Self {
        match t.version {
            VersionAt::Column(c) => self.ident(c),
            VersionAt::Header => {
                self.push("substr(");
                self.ident(t.columns[0].column);
                self.push(", 2, 4)")
            }
        }
    }

    /// A version as the value [`Self::version_expr`] compares with.
    fn version_value(t: &SealedTable, version: u32) -> Value {
        match t.version {
            VersionAt::Column(_) => Value::from(i32::try_from(version).unwrap_or(i32::MAX)),
            VersionAt::Header => Value::from(version.to_be_bytes().to_vec()),
        }
    }

    /// `FROM t WHERE org = $ AND <version> <op> $`.
    fn rows_of_org_under(
        &mut self,
        t: &SealedTable,
        ctx: &TenantContext,
        op: &str,
        version: u32,
    ) -> &mut Self {
        self.push(" FROM ")
            .ident(t.table)
            .push(" WHERE ")
            .ident(t.org);
        self.push(" = ").bind(Value::from(ctx.org().as_uuid()));
        if t.version == VersionAt::Header {
            self.push(" AND ")
                .ident(t.columns[0].column)
                .push(" IS NOT NULL");
        }
        self.push(" AND ").version_expr(t).push(op);
        self.bind(Self::version_value(t, version))
    }

    fn statement(self) -> Statement {
        Statement::from_sql_and_values(self.backend, self.text, self.values)
    }
}

/// The value of key part `k` of `row`.
fn key_value(row: &QueryResult, k: KeyPart) -> Result<Value, StorageError> {
    Ok(match k {
        KeyPart::Uuid(c) => Value::from(row.try_get::<Uuid>("", c).map_err(storage_error)?),
        KeyPart::Bytes(c) => Value::from(row.try_get::<Vec<u8>>("", c).map_err(storage_error)?),
        KeyPart::Int(c) => Value::from(row.try_get::<i32>("", c).map_err(storage_error)?),
    })
}

/// The 16 bytes ciphertexts of `row` are bound to.
fn row_binding(t: &SealedTable, row: &QueryResult) -> Result<[u8; 16], StorageError> {
    match t.row {
        RowBinding::Uuid(c) => Ok(row
            .try_get::<Uuid>("", c)
            .map_err(storage_error)?
            .into_bytes()),
        RowBinding::BytesPrefix(c) => row
            .try_get::<Vec<u8>>("", c)
            .map_err(storage_error)?
            .get(..16)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(integrity),
    }
}

/// The column name `column`'s ciphertext in `row` is bound to.
fn binding_name(name: BindingName, row: &QueryResult) -> Result<String, StorageError> {
    Ok(match name {
        BindingName::Fixed(n) => n.to_owned(),
        BindingName::Numbered { prefix, by } => {
            let n = row.try_get::<i32>("", by).map_err(storage_error)?;
            format!("{prefix}{n}")
        }
    })
}

impl Rotation {
    /// Rotation over `db`, with the organizations' keys in `keys`.
    pub fn new(db: Database, keys: Arc<KeyRing>) -> Self {
        Self { db, keys }
    }

    /// The organization's current data-key version.
    pub async fn current(&self, ctx: &TenantContext) -> Result<u32, StorageError> {
        Ok(self.keys.current(ctx).await?.version())
    }

    /// How many of the organization's rows of `t` are under a version older
    /// than the current one.
    pub async fn pending(&self, ctx: &TenantContext, t: &SealedTable) -> Result<u64, StorageError> {
        let current = self.current(ctx).await?;
        let mut sql = Sql::new(self.db.backend());
        sql.push("SELECT COUNT(*) AS n");
        sql.rows_of_org_under(t, ctx, " < ", current);
        let tx = self.db.begin_tenant_read(ctx).await?;
        let n = tx
            .query_one_raw(sql.statement())
            .await
            .map_err(storage_error)?
            .map(|r| r.try_get::<i64>("", "n"))
            .transpose()
            .map_err(storage_error)?
            .unwrap_or(0);
        tx.commit().await.map_err(storage_error)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Re-encrypts up to `batch` of the organization's rows of `t` that are
    /// under a version older than the current one; returns how many. Call
    /// until it returns 0: reads keep working throughout (each row names
    /// its version), and an interrupted rotation resumes where it stopped.
    pub async fn reencrypt_batch(
        &self,
        ctx: &TenantContext,
        t: &SealedTable,
        batch: u64,
    ) -> Result<u64, StorageError> {
        let current = self.keys.current(ctx).await?;
        let backend = self.db.backend();
        let mut sql = Sql::new(backend);
        sql.push("SELECT ");
        let mut selected: Vec<&str> = Vec::new();
        for name in t
            .key
            .iter()
            .map(|k| k.name())
            .chain(match t.version {
                VersionAt::Column(c) => Some(c),
                VersionAt::Header => None,
            })
            .chain(t.columns.iter().map(|c| c.column))
        {
            if !selected.is_empty() {
                sql.push(", ");
            }
            sql.ident(name);
            selected.push(name);
        }
        sql.rows_of_org_under(t, ctx, " < ", current.version());
        sql.push(" ORDER BY ");
        for (i, k) in t.key.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.ident(k.name());
        }
        sql.push(&format!(" LIMIT {}", batch.max(1)));
        if backend == Backend::Postgres {
            sql.push(" FOR UPDATE");
        }
        let tx = self.db.begin_tenant(ctx).await?;
        let rows = tx
            .query_all_raw(sql.statement())
            .await
            .map_err(storage_error)?;
        let mut keys = KeyVersions::new(&self.keys, ctx);
        for row in &rows {
            self.reencrypt_row(&tx, ctx, t, row, &current, &mut keys)
                .await?;
        }
        tx.commit().await.map_err(storage_error)?;
        Ok(u64::try_from(rows.len()).unwrap_or(u64::MAX))
    }

    async fn reencrypt_row(
        &self,
        tx: &DatabaseTransaction,
        ctx: &TenantContext,
        t: &SealedTable,
        row: &QueryResult,
        current: &DataKey,
        keys: &mut KeyVersions<'_>,
    ) -> Result<(), StorageError> {
        let org = ctx.org().as_uuid().into_bytes();
        let row_id = row_binding(t, row)?;
        let row_version = match t.version {
            VersionAt::Column(c) => Some(row.try_get::<i32>("", c).map_err(storage_error)?),
            VersionAt::Header => None,
        };
        let mut sealed: Vec<Option<Vec<u8>>> = Vec::with_capacity(t.columns.len());
        let mut plain: Vec<(&str, Zeroizing<Vec<u8>>)> = Vec::new();
        for c in t.columns {
            let Some(old) = row
                .try_get::<Option<Vec<u8>>>("", c.column)
                .map_err(storage_error)?
            else {
                sealed.push(None);
                continue;
            };
            let version = match row_version {
                Some(v) => v,
                None => key_version(&old)
                    .and_then(|v| i32::try_from(v).ok())
                    .ok_or_else(integrity)?,
            };
            let name = binding_name(c.binding, row)?;
            let binding = Binding {
                org: &org,
                table: t.table,
                column: &name,
                row: &row_id,
            };
            let opened = keys
                .get(version)
                .await?
                .decrypt(&binding, &old)
                .map_err(|_| integrity())?;
            sealed.push(Some(current.encrypt(&binding, &opened).map_err(|_| {
                StorageError::Unavailable("encryption failed".into())
            })?));
            plain.push((c.column, opened));
        }
        let mut sql = Sql::new(self.db.backend());
        sql.push("UPDATE ").ident(t.table).push(" SET ");
        let mut first = true;
        let mut set = |sql: &mut Sql, column: &str, value: Value| {
            if !first {
                sql.push(", ");
            }
            first = false;
            sql.ident(column).push(" = ").bind(value);
        };
        for (c, value) in t.columns.iter().zip(sealed) {
            set(&mut sql, c.column, Value::Bytes(value));
        }
        for index in t.blind_indexes {
            let values = index
                .from
                .iter()
                .map(|source| {
                    plain
                        .iter()
                        .find(|(c, _)| c == source)
                        .map(|(_, p)| std::str::from_utf8(p).map_err(|_| integrity()))
                        .transpose()
                })
                .collect::<Result<Option<Vec<&str>>, _>>()?;
            let value = values.map(|v| blind_index(current, t.table, index, &v));
            set(&mut sql, index.column, Value::Bytes(value));
        }
        if let VersionAt::Column(c) = t.version {
            set(
                &mut sql,
                c,
                Value::from(i32::try_from(current.version()).unwrap_or(i32::MAX)),
            );
        }
        sql.push(" WHERE ").ident(t.org).push(" = ");
        sql.bind(Value::from(ctx.org().as_uuid()));
        for k in t.key {
            sql.push(" AND ").ident(k.name()).push(" = ");
            sql.bind(key_value(row, *k)?);
        }
        tx.execute_raw(sql.statement())
            .await
            .map_err(storage_error)?;
        Ok(())
    }

    /// The organization's rows of every registered table, by version.
    pub async fn usage(&self, ctx: &TenantContext) -> Result<Vec<TableUsage>, StorageError> {
        let tx = self.db.begin_tenant_read(ctx).await?;
        let mut out = Vec::with_capacity(REGISTRY.len());
        for t in REGISTRY {
            out.push(TableUsage {
                table: t.table,
                rows: self.count_by_version(&tx, ctx, t).await?,
            });
        }
        tx.commit().await.map_err(storage_error)?;
        Ok(out)
    }

    async fn count_by_version(
        &self,
        tx: &DatabaseTransaction,
        ctx: &TenantContext,
        t: &SealedTable,
    ) -> Result<BTreeMap<u32, u64>, StorageError> {
        let mut sql = Sql::new(self.db.backend());
        sql.push("SELECT ")
            .version_expr(t)
            .push(" AS v, COUNT(*) AS n FROM ");
        sql.ident(t.table).push(" WHERE ").ident(t.org).push(" = ");
        sql.bind(Value::from(ctx.org().as_uuid()));
        if t.version == VersionAt::Header {
            sql.push(" AND ")
                .ident(t.columns[0].column)
                .push(" IS NOT NULL");
        }
        sql.push(" GROUP BY ").version_expr(t);
        let mut rows = BTreeMap::new();
        for r in tx
            .query_all_raw(sql.statement())
            .await
            .map_err(storage_error)?
        {
            let version = match t.version {
                VersionAt::Column(_) => {
                    u32::try_from(r.try_get::<i32>("", "v").map_err(storage_error)?).ok()
                }
                VersionAt::Header => r
                    .try_get::<Vec<u8>>("", "v")
                    .map_err(storage_error)?
                    .try_into()
                    .ok()
                    .map(u32::from_be_bytes),
            }
            .ok_or_else(integrity)?;
            let n = r.try_get::<i64>("", "n").map_err(storage_error)?;
            *rows.entry(version).or_insert(0) += u64::try_from(n).unwrap_or(0);
        }
        Ok(rows)
    }

    /// Destroys data-key version `version` of the organization, only when
    /// it is not the current one, no row of any registered table uses it,
    /// and the version after it was made at least [`RETIRE_AFTER`] before
    /// `now`. Ciphertexts under it (there are none) could never be read
    /// again.
    pub async fn retire(
        &self,
        ctx: &TenantContext,
        version: u32,
        now: OffsetDateTime,
    ) -> Result<Retire, StorageError> {
        let versions = self.keys.versions(ctx).await?;
        if !versions.iter().any(|(v, _)| *v == version) {
            return Ok(Retire::Unknown);
        }
        let Some((_, superseded_at)) = versions.iter().find(|(v, _)| *v > version).copied() else {
            return Ok(Retire::Current);
        };
        let until = superseded_at + RETIRE_AFTER;
        if now < until {
            return Ok(Retire::TooRecent { until });
        }
        let tx = self.db.begin_tenant(ctx).await?;
        for t in REGISTRY {
            let rows = self
                .count_by_version(&tx, ctx, t)
                .await?
                .get(&version)
                .copied()
                .unwrap_or(0);
            if rows > 0 {
                return Ok(Retire::InUse {
                    table: t.table,
                    rows,
                });
            }
        }
        let destroyed = self.keys.delete_version(&tx, ctx, version).await?;
        tx.commit().await.map_err(storage_error)?;
        self.keys.forget(ctx, version);
        Ok(if destroyed {
            Retire::Retired
        } else {
            Retire::Unknown
        })
    }
}
