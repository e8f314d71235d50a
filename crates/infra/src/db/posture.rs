//! The server's start-up check of its own PostgreSQL role.

use std::fmt;

use carapace_tenancy::StorageError;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use super::storage_error;

/// One way the connected role could see or change other tenants' rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PostureProblem {
    /// The role is a superuser (superusers bypass row-level security).
    Superuser(String),
    /// The role has BYPASSRLS.
    BypassRls(String),
    /// The role owns (or is a member of the owner of) a tenant table.
    OwnsTenantTable(String),
    /// A tenant table does not have row-level security enabled and forced.
    RlsNotForced(String),
    /// A tenant table has no row-level security policy.
    NoPolicy(String),
}

impl fmt::Display for PostureProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Superuser(r) => write!(
                f,
                "database role {r} is a superuser and bypasses row-level security: connect as the app role (carapace_app)"
            ),
            Self::BypassRls(r) => write!(
                f,
                "database role {r} has BYPASSRLS: connect as a role without it (carapace_app)"
            ),
            Self::OwnsTenantTable(t) => write!(
                f,
                "the server's database role owns tenant table {t}: run migrations as the owner and serve as carapace_app"
            ),
            Self::RlsNotForced(t) => write!(
                f,
                "tenant table {t} does not have row-level security enabled and forced: run `carapace migrate` as the owner"
            ),
            Self::NoPolicy(t) => write!(f, "tenant table {t} has no row-level security policy"),
        }
    }
}

/// Checks the connected role and every table with an `org_id` column.
pub(super) async fn check(conn: &DatabaseConnection) -> Result<Vec<PostureProblem>, StorageError> {
    let mut problems = Vec::new();
    let role = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_user::text AS name, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
        ))
        .await
        .map_err(storage_error)?
        .ok_or_else(|| StorageError::Internal("current role not found in pg_roles".into()))?;
    let name: String = role.try_get("", "name").map_err(storage_error)?;
    if role
        .try_get::<bool>("", "rolsuper")
        .map_err(storage_error)?
    {
        problems.push(PostureProblem::Superuser(name.clone()));
    }
    if role
        .try_get::<bool>("", "rolbypassrls")
        .map_err(storage_error)?
    {
        problems.push(PostureProblem::BypassRls(name.clone()));
    }
    let tables = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT c.relname::text AS name,
                    c.relrowsecurity AS enabled,
                    c.relforcerowsecurity AS forced,
                    pg_has_role(current_user, c.relowner, 'MEMBER') AS owned,
                    EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid) AS has_policy
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.relkind IN ('r', 'p')
               AND n.nspname = current_schema()
               AND EXISTS (SELECT 1 FROM pg_attribute a
                           WHERE a.attrelid = c.oid AND a.attname = 'org_id' AND NOT a.attisdropped)
             ORDER BY c.relname",
        ))
        .await
        .map_err(storage_error)?;
    for t in tables {
        let table: String = t.try_get("", "name").map_err(storage_error)?;
        let enabled: bool = t.try_get("", "enabled").map_err(storage_error)?;
        let forced: bool = t.try_get("", "forced").map_err(storage_error)?;
        if t.try_get::<bool>("", "owned").map_err(storage_error)? {
            problems.push(PostureProblem::OwnsTenantTable(table.clone()));
        }
        if !(enabled && forced) {
            problems.push(PostureProblem::RlsNotForced(table.clone()));
        }
        if !t.try_get::<bool>("", "has_policy").map_err(storage_error)? {
            problems.push(PostureProblem::NoPolicy(table));
        }
    }
    Ok(problems)
}
