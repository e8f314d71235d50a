//! Processes that start together: the README's own walkthrough starts
//! `carapace serve` and runs `carapace org create` beside it on a fresh
//! SQLite file, and a deployment may start several `carapace migrate` (one
//! per instance) against a fresh PostgreSQL database. Whichever process
//! comes first migrates; the others wait for it and find nothing to do.

use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use carapace_infra::{Database, DbSettings, SeaOrganizations};
use carapace_tenancy::{OrgSlug, OrganizationRepository as _};
use sea_orm::{ConnectionTrait as _, DbBackend, Statement};

const BIN: &str = env!("CARGO_BIN_EXE_carapace");

/// Rounds per test: each a fresh database, each a new race.
const ROUNDS: usize = 3;

/// A child process, killed on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(dir: &tempfile::TempDir, env: &[(&str, &str)], args: &[&str]) -> Child {
    Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_org_creates_started_together_on_a_fresh_sqlite_file_all_succeed() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let env = [
            ("CARAPACE_BIND", "127.0.0.1:0"),
            ("CARAPACE_LOG_FORMAT", "json"),
        ];
        // The same instant: the server and four commands on a file that
        // does not exist yet.
        let mut served = Running(start(&dir, &env, &["serve"]));
        let creates: Vec<Child> = (0..4)
            .map(|i| {
                let slug = format!("clinic-{i}");
                start(
                    &dir,
                    &env,
                    &["org", "create", "--name", "Clinic", "--slug", &slug],
                )
            })
            .collect();
        for (i, create) in creates.into_iter().enumerate() {
            let out = create.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
            assert!(
                out.status.success(),
                "round {round}: org create {i} failed: {}",
                text(&out.stderr)
            );
        }
        let stdout = served.0.stdout.take().unwrap_or_else(|| panic!("stdout"));
        let banner = tokio::task::spawn_blocking(move || {
            BufReader::new(stdout)
                .lines()
                .next()
                .and_then(Result::ok)
                .unwrap_or_default()
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        let Some(addr) = banner.split("http://").nth(1).map(str::trim) else {
            let _ = served.0.kill();
            let mut err = String::new();
            if let Some(mut stderr) = served.0.stderr.take() {
                let _ = stderr.read_to_string(&mut err);
            }
            panic!("round {round}: serve did not start: {err}");
        };
        let ready = http
            .get(format!("http://{addr}/health/ready"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ready.status(), 200, "round {round}");
        drop(served);

        // One schema, every organization in it.
        let url = format!("sqlite://{}/data/carapace.db", dir.path().display());
        let db = Database::connect(&DbSettings::new(url.into()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            db.pending_migrations()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            Vec::<String>::new()
        );
        let orgs = SeaOrganizations::new(db.clone());
        for i in 0..4 {
            let slug = OrgSlug::parse(&format!("clinic-{i}")).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                orgs.find_by_slug(&slug)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"))
                    .is_some(),
                "round {round}: clinic-{i}"
            );
        }
        db.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_migrates_at_once_on_a_fresh_postgres_database_all_succeed() {
    for round in 0..ROUNDS {
        let Some(pg) = carapace_testkit::postgres_fresh("attack_concurrent_migrate", false).await
        else {
            return;
        };
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let env = [
            ("CARAPACE_DATABASE_URL", pg.app_url.as_str()),
            ("CARAPACE_DATABASE_OWNER_URL", pg.owner_url.as_str()),
            ("CARAPACE_LOG_FORMAT", "json"),
        ];
        let migrates: Vec<Child> = (0..4).map(|_| start(&dir, &env, &["migrate"])).collect();
        for (i, migrate) in migrates.into_iter().enumerate() {
            let out = migrate.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
            assert!(
                out.status.success(),
                "round {round}: migrate {i} failed: {}",
                text(&out.stderr)
            );
        }

        // Every migration applied (none pending), each recorded once.
        let db = Database::connect(&pg.owner_settings())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            db.pending_migrations()
                .await
                .unwrap_or_else(|e| panic!("{e}")),
            Vec::<String>::new()
        );
        db.close().await;
        let conn = sea_orm::Database::connect(pg.owner_url.as_str())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let row = conn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                "SELECT count(*) AS n, count(DISTINCT version) AS d FROM seaql_migrations",
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|| panic!("no row"));
        let n: i64 = row.try_get("", "n").unwrap_or_else(|e| panic!("{e}"));
        let d: i64 = row.try_get("", "d").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(n, d, "round {round}: no migration recorded twice");
        let _ = conn.close().await;
        // And the server's role may serve from it.
        let app = Database::connect(&pg.app_settings())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            app.posture_problems()
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_empty()
        );
        app.close().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
