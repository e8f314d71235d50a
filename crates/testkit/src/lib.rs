//! Test support shared by the integration suites (dev-dependency only).
//!
//! Service rules from the contract: tests that need PostgreSQL read
//! `CARAPACE_TEST_PG_URL` (a superuser URL, e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`). Without it they print a
//! visible `SKIP` line and pass; with `CARAPACE_REQUIRE_SERVICES=1` a missing
//! service fails the test instead.
//!
//! Each test run gets its own freshly created and migrated database
//! ([`postgres`]); tests that must damage or leave a database unmigrated get
//! a private one ([`postgres_fresh`]). Databases of runs older than two hours
//! are dropped when a run starts.

pub mod issuer;
pub mod kms;
pub mod receiver;
pub mod relay;
pub mod s3;
pub mod voice;

use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use carapace_infra::{Database, DbSettings};
use sea_orm::{ConnectionTrait, DbBackend, Statement};
use tokio::sync::OnceCell;
use url::Url;

/// The role the server connects as (created by the migrations).
pub const APP_ROLE: &str = "carapace_app";
const PREFIX: &str = "carapace_test_";

/// A PostgreSQL database made for tests.
#[derive(Clone, Debug)]
pub struct PgTestDb {
    /// Its name.
    pub name: String,
    /// URL as the superuser / schema owner (runs migrations).
    pub owner_url: String,
    /// URL as the server's non-owner role (what the server uses).
    pub app_url: String,
}

impl PgTestDb {
    /// Settings for connecting as the server's role.
    pub fn app_settings(&self) -> DbSettings {
        DbSettings::new(self.app_url.clone().into())
    }

    /// Settings for connecting as the owner.
    pub fn owner_settings(&self) -> DbSettings {
        DbSettings::new(self.owner_url.clone().into())
    }
}

/// A listener on a free loopback port, and its `http://` URL (for a
/// stand-in served by actix-web).
pub fn local_listener() -> (std::net::TcpListener, String) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let addr = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    (listener, format!("http://{addr}"))
}

/// Serves `routes` over `state` from `listener` with one worker, in the
/// background of the current Tokio runtime (the stand-ins' server).
pub fn serve<S: Send + Sync + 'static>(
    listener: std::net::TcpListener,
    state: std::sync::Arc<S>,
    routes: fn(&mut actix_web::web::ServiceConfig),
) {
    let data = actix_web::web::Data::from(state);
    let server = actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(data.clone())
            .configure(routes)
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap_or_else(|e| panic!("{e}"))
    .run();
    tokio::spawn(server);
}

/// Whether CI demands every service (`CARAPACE_REQUIRE_SERVICES=1`).
pub fn services_required() -> bool {
    std::env::var("CARAPACE_REQUIRE_SERVICES").is_ok_and(|v| v == "1")
}

/// Prints a visible skip line (not captured by the test harness), or fails
/// the test when services are required.
pub fn skip(test: &str, why: &str) {
    assert!(
        !services_required(),
        "{test}: {why}, and CARAPACE_REQUIRE_SERVICES=1"
    );
    let _ = writeln!(std::io::stderr(), "SKIP {test}: {why}");
}

/// The test Redis (`CARAPACE_TEST_REDIS_URL`); `None` (after a SKIP line)
/// when it is unset.
pub fn redis_url(test: &str) -> Option<String> {
    match std::env::var("CARAPACE_TEST_REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip(test, "CARAPACE_TEST_REDIS_URL not set");
            None
        }
    }
}

fn admin_url() -> Option<String> {
    std::env::var("CARAPACE_TEST_PG_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

/// The run's shared, migrated PostgreSQL database; `None` (after a SKIP
/// line) when `CARAPACE_TEST_PG_URL` is unset.
pub async fn postgres(test: &str) -> Option<&'static PgTestDb> {
    static SHARED: OnceCell<PgTestDb> = OnceCell::const_new();
    let Some(admin) = admin_url() else {
        skip(test, "CARAPACE_TEST_PG_URL not set");
        return None;
    };
    let db = SHARED
        .get_or_try_init(|| async {
            drop_stale(&admin).await?;
            create(&admin, true).await
        })
        .await;
    match db {
        Ok(db) => Some(db),
        Err(e) => panic!("{test}: could not prepare a PostgreSQL test database: {e:#}"),
    }
}

/// A private PostgreSQL database for one test, migrated or not.
pub async fn postgres_fresh(test: &str, migrated: bool) -> Option<PgTestDb> {
    let Some(admin) = admin_url() else {
        skip(test, "CARAPACE_TEST_PG_URL not set");
        return None;
    };
    match create(&admin, migrated).await {
        Ok(db) => Some(db),
        Err(e) => panic!("{test}: could not prepare a PostgreSQL test database: {e:#}"),
    }
}

/// Runs `sql` as the owner of `db` (for tests that alter the schema).
pub async fn exec_as_owner(db: &PgTestDb, sql: &str) -> Result<()> {
    let conn = admin(&db.owner_url).await?;
    conn.execute_unprepared(sql).await?;
    conn.close().await?;
    Ok(())
}

async fn admin(admin_url: &str) -> Result<sea_orm::DatabaseConnection> {
    sea_orm::Database::connect(admin_url)
        .await
        .context("connecting with CARAPACE_TEST_PG_URL")
}

async fn create(admin_url: &str, migrated: bool) -> Result<PgTestDb> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    let name = format!("{PREFIX}{now}_{}", uuid::Uuid::new_v4().simple());
    let conn = admin(admin_url).await?;
    conn.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    conn.close().await?;

    let mut owner = Url::parse(admin_url).context("CARAPACE_TEST_PG_URL is not a URL")?;
    owner.set_path(&format!("/{name}"));
    let mut app = owner.clone();
    app.set_username(APP_ROLE)
        .map_err(|()| anyhow::anyhow!("cannot set user"))?;
    app.set_password(None)
        .map_err(|()| anyhow::anyhow!("cannot clear password"))?;
    let db = PgTestDb {
        name,
        owner_url: owner.to_string(),
        app_url: app.to_string(),
    };
    if migrated {
        let conn = Database::connect(&db.owner_settings()).await?;
        conn.migrate().await?;
        conn.close().await;
    }
    Ok(db)
}

/// Drops test databases from runs more than two hours old.
async fn drop_stale(admin_url: &str) -> Result<()> {
    let conn = admin(admin_url).await?;
    let rows = conn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("SELECT datname::text AS name FROM pg_database WHERE datname LIKE '{PREFIX}%'"),
        ))
        .await?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    for row in rows {
        let name: String = row.try_get("", "name")?;
        let born = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|t| t.parse::<u64>().ok());
        if born.is_some_and(|t| t + 2 * 3600 < now) {
            let _ = conn
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
    conn.close().await?;
    Ok(())
}
