//! Behind PgBouncer in transaction mode: every request's tenant setting is
//! transaction-local, so row-level security holds when two organizations'
//! requests take turns on one pooled server connection, and nothing of a
//! tenant is left on it between transactions.
//!
//! Needs a PgBouncer ≥ 1.21 (prepared statements in transaction mode) at
//! `CARAPACE_TEST_PGBOUNCER`; `scripts/pgbouncer-check` builds one from
//! Debian's source package and runs this module. Without it the test says
//! SKIP (it is not one of the services `CARAPACE_REQUIRE_SERVICES` covers).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use carapace_auth::Role;
use sea_orm::{ConnectionTrait as _, Statement};
use serde_json::Value;

use crate::support::{settings_with, spawn_with};

struct Bouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PgBouncer in front of the test cluster: transaction pooling, one server
/// connection per database and user, prepared statements tracked.
fn bouncer(binary: &str, pg_url: &url::Url) -> Bouncer {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"));
    let ini = dir.path().join("pgbouncer.ini");
    std::fs::write(dir.path().join("users.txt"), "\"carapace_app\" \"\"\n")
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        &ini,
        format!(
            "[databases]\n* = host={host} port={pg_port}\n\n[pgbouncer]\n\
             listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {users}\n\
             pool_mode = transaction\ndefault_pool_size = 1\nmax_client_conn = 200\n\
             max_prepared_statements = 200\n\
             ignore_startup_parameters = extra_float_digits,options\n",
            host = pg_url.host_str().unwrap_or("127.0.0.1"),
            pg_port = pg_url.port().unwrap_or(5432),
            users = dir.path().join("users.txt").display(),
        ),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // PgBouncer will not run as root: it drops to postgres when it is root.
    let mut command = Command::new(binary);
    if is_root() {
        let _ = Command::new("chmod")
            .args(["-R", "a+rX"])
            .arg(dir.path())
            .status();
        command.args(["-u", "postgres"]);
    }
    let child = command
        .arg(&ini)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{binary}: {e}"));
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "PgBouncer did not listen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Bouncer {
        child,
        port,
        _dir: dir,
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_level_security_holds_through_a_shared_transaction_pooled_connection() {
    let test = "pgbouncer_transaction_mode";
    let Ok(binary) = std::env::var("CARAPACE_TEST_PGBOUNCER") else {
        eprintln!("SKIP {test}: CARAPACE_TEST_PGBOUNCER not set (scripts/pgbouncer-check)");
        return;
    };
    let Some(pg) = carapace_testkit::postgres_fresh(test, true).await else {
        return;
    };
    // PgBouncer does not pass the per-connection statement timeout the
    // server asks for in its startup packet (`options`): the role's own
    // default carries it instead (docs/deploy.md).
    carapace_testkit::exec_as_owner(
        &pg,
        &format!(
            "ALTER ROLE {} IN DATABASE {} SET statement_timeout = '15s'",
            carapace_testkit::APP_ROLE,
            pg.name
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let direct = url::Url::parse(&pg.app_url).unwrap_or_else(|e| panic!("{e}"));
    let pool = bouncer(&binary, &direct);
    let mut pooled = direct.clone();
    pooled
        .set_port(Some(pool.port))
        .unwrap_or_else(|()| panic!("port"));

    // The server reaches PostgreSQL only through PgBouncer, with a pool of
    // its own larger than PgBouncer's one server connection.
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut settings = settings_with(pooled.to_string());
    settings.data_dir = dir.path().to_path_buf();
    let app = spawn_with(settings, Some(dir)).await;
    let ready = app.get_public("/health/ready").await;
    assert_eq!(ready.status(), 200, "{:?}", ready.text().await);

    let (a, b) = (app.org().await, app.org().await);
    let (admin_a, admin_b) = (app.token(&a, Role::Admin), app.token(&b, Role::Admin));
    // Twenty registrations per organization, all at once, interleaved on
    // the one server connection.
    let mut writes = Vec::new();
    for i in 0..20 {
        for (token, org) in [(&admin_a, "a"), (&admin_b, "b")] {
            let app = &app;
            writes.push(async move { app.new_patient(token, &format!("Org{org}{i}")).await });
        }
    }
    futures_util::future::join_all(writes).await;
    for (token, org, other) in [(&admin_a, "a", "b"), (&admin_b, "b", "a")] {
        let seen = app.all_patients(token).await;
        assert_eq!(seen.len(), 20, "{org}");
        assert!(
            seen.iter().all(|p| p["given_name"]
                .as_str()
                .is_some_and(|g| g.starts_with(&format!("Org{org}")))),
            "{org} sees {other}'s patients"
        );
    }
    // Another organization's patient, asked for by id through the pool:
    // not found, as without PgBouncer.
    let theirs = app.all_patients(&admin_b).await;
    let id = theirs[0]["id"].as_str().unwrap_or_default();
    let res = app.get(&format!("/api/v1/patients/{id}"), &admin_a).await;
    assert_eq!(res.status(), 404);

    // The one server connection carries no tenant between transactions: a
    // client of PgBouncer that sets nothing sees no tenant and no rows.
    let raw = sea_orm::Database::connect(pooled.to_string())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..5 {
        let row = raw
            .query_one_raw(Statement::from_string(
                raw.get_database_backend(),
                "SELECT coalesce(current_setting('app.org_id', true), '') AS org,
                        current_setting('statement_timeout') AS timeout,
                        (SELECT count(*) FROM patients) AS n,
                        (SELECT count(*) FROM pg_stat_activity
                          WHERE usename = current_user AND datname = current_database()) AS servers",
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("a row"));
        let org: String = row.try_get("", "org").unwrap_or_else(|e| panic!("{e}"));
        let n: i64 = row.try_get("", "n").unwrap_or_else(|e| panic!("{e}"));
        let servers: i64 = row.try_get("", "servers").unwrap_or_else(|e| panic!("{e}"));
        let timeout: String = row.try_get("", "timeout").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(org, "", "a tenant left on the pooled connection");
        assert_eq!(timeout, "15s");
        assert_eq!(n, 0, "rows visible without a tenant");
        // Really one shared server connection for every client.
        assert_eq!(servers, 1);
    }
    // The check is not vacuous: a session-level setting made by one client
    // is what the next client of the shared connection would find.
    let leaky = sea_orm::Database::connect(pooled.to_string())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let leak = |sql: &'static str| Statement::from_string(sea_orm::DatabaseBackend::Postgres, sql);
    leaky
        .execute_raw(leak("SELECT set_config('app.org_id', 'leaked', false)"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = raw
        .query_one_raw(leak(
            "SELECT coalesce(current_setting('app.org_id', true), '') AS org",
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .and_then(|r| r.try_get::<String>("", "org").ok());
    assert_eq!(seen.as_deref(), Some("leaked"));
    leaky
        .execute_raw(leak("RESET app.org_id"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    leaky.close().await.unwrap_or_else(|e| panic!("{e}"));
    raw.close().await.unwrap_or_else(|e| panic!("{e}"));
    let check: Value = app
        .get_public("/health/ready")
        .await
        .json()
        .await
        .unwrap_or_default();
    assert_eq!(check["status"], "ready", "{check}");
    app.stop().await;
    drop(pool);
}
