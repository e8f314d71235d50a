//! The database: URLs, pool, timeouts and TLS.

use std::time::Duration;

use carapace_infra::db::Backend;
use carapace_infra::{DbSettings, TlsMode};
use secrecy::{ExposeSecret as _, SecretString};

use super::checks::ConfigProblem;

/// The database: URLs, pool, timeouts and TLS.
#[derive(Clone, Debug)]
pub struct DatabaseSection {
    /// The server's database URL (on PostgreSQL: the non-owner app role).
    pub url: SecretString,
    /// The schema owner's URL, for `carapace migrate` and migrate-on-start.
    pub owner_url: Option<SecretString>,
    /// Largest connection pool.
    pub pool_max: u32,
    /// Seconds allowed to open a connection.
    pub connect_timeout_secs: u64,
    /// Seconds a request may wait for a pooled connection.
    pub acquire_timeout_secs: u64,
    /// Seconds one statement may run (PostgreSQL).
    pub statement_timeout_secs: u64,
    /// Transactions shared by audited calls at once (group commit); 0:
    /// twice the CPUs.
    pub group_workers: u32,
    /// TLS to PostgreSQL: disable, prefer, require, verify-ca, verify-full.
    pub tls: TlsMode,
    /// Allow production on PostgreSQL without TLS, or with TLS that does
    /// not verify the server (trusted private network).
    pub allow_insecure: bool,
}

impl DatabaseSection {
    /// The database engine of `url`.
    pub fn backend(&self) -> Option<Backend> {
        Backend::of_url(self.url.expose_secret())
    }

    /// Connection settings for the server's pool.
    pub fn db(&self) -> DbSettings {
        self.db_with(self.url.clone())
    }

    /// Connection settings for migrations: the owner URL if set, else the
    /// server URL (SQLite has no roles).
    pub fn owner_db(&self) -> DbSettings {
        self.db_with(self.owner_url.clone().unwrap_or_else(|| self.url.clone()))
    }

    fn db_with(&self, url: SecretString) -> DbSettings {
        DbSettings {
            url,
            pool_max: self.pool_max,
            connect_timeout: Duration::from_secs(self.connect_timeout_secs),
            acquire_timeout: Duration::from_secs(self.acquire_timeout_secs),
            statement_timeout: Duration::from_secs(self.statement_timeout_secs),
            tls: self.tls,
            group_workers: self.group_workers,
        }
    }

    /// Adds this section's problems to `p`.
    pub fn problems(&self, p: &mut Vec<ConfigProblem>) {
        let url = self.url.expose_secret();
        match self.backend() {
            None => p.push(ConfigProblem::new(
                "CARAPACE_DATABASE_URL",
                "must start with postgres:// (or postgresql://) or sqlite://",
            )),
            Some(Backend::Postgres) if carries_tls_mode(url) => p.push(ConfigProblem::new(
                "CARAPACE_DATABASE_URL",
                "carries sslmode; set the TLS mode with CARAPACE_DATABASE_TLS instead",
            )),
            _ => {}
        }
        if let Some(owner) = &self.owner_url
            && carries_tls_mode(owner.expose_secret())
        {
            p.push(ConfigProblem::new(
                "CARAPACE_DATABASE_OWNER_URL",
                "carries sslmode; set the TLS mode with CARAPACE_DATABASE_TLS instead",
            ));
        }
        if let Some(owner) = &self.owner_url
            && Backend::of_url(owner.expose_secret()) != self.backend()
        {
            p.push(ConfigProblem::new(
                "CARAPACE_DATABASE_OWNER_URL",
                "must point at the same kind of database as CARAPACE_DATABASE_URL",
            ));
        }
        if !(1..=1000).contains(&self.pool_max) {
            p.push(ConfigProblem::new(
                "CARAPACE_DATABASE_POOL_MAX",
                "must be between 1 and 1000",
            ));
        }
        for (key, secs) in [
            (
                "CARAPACE_DATABASE_CONNECT_TIMEOUT_SECS",
                self.connect_timeout_secs,
            ),
            (
                "CARAPACE_DATABASE_ACQUIRE_TIMEOUT_SECS",
                self.acquire_timeout_secs,
            ),
            (
                "CARAPACE_DATABASE_STATEMENT_TIMEOUT_SECS",
                self.statement_timeout_secs,
            ),
        ] {
            if !(1..=3600).contains(&secs) {
                p.push(ConfigProblem::new(
                    key,
                    "must be between 1 and 3600 seconds",
                ));
            }
        }
    }
}

/// Whether a PostgreSQL URL names a TLS mode itself (`sslmode` or
/// `ssl-mode`, in any spelling the driver decodes), which would compete
/// with `CARAPACE_DATABASE_TLS`.
fn carries_tls_mode(url: &str) -> bool {
    match url::Url::parse(url) {
        Ok(parsed) => parsed
            .query_pairs()
            .any(|(k, _)| k.eq_ignore_ascii_case("sslmode") || k.eq_ignore_ascii_case("ssl-mode")),
        Err(_) => {
            let lower = url.to_ascii_lowercase();
            lower.contains("sslmode") || lower.contains("ssl-mode")
        }
    }
}
