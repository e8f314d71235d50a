//! Stopping the server must not leave the trail short. An operator (or an
//! orchestrator) sends SIGTERM while clients are busy, twenty times over,
//! on PostgreSQL with another chainer holding the organization's chain at
//! every other stop: every event written before the stop is chained and
//! signed by the time the process exits, and an export of the whole range
//! holds every event.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use carapace_auth::Role;
use carapace_infra::dev_token::DevTokens;
use carapace_infra::{Database, DbSettings, SeaOrganizations};
use carapace_tenancy::{NewOrganization, OrgId, OrgName, OrgSlug, OrganizationRepository as _};
use secrecy::{ExposeSecret as _, SecretString};

use crate::support::{DEV_SECRET, patient};

const BIN: &str = env!("CARGO_BIN_EXE_carapace");
const ROUNDS: usize = 20;

/// A served binary, killed if the test ends early.
struct Served(Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn env(db_url: &str, data: &std::path::Path) -> Vec<(&'static str, String)> {
    vec![
        ("CARAPACE_DATABASE_URL", db_url.to_owned()),
        ("CARAPACE_BIND", "127.0.0.1:0".to_owned()),
        ("CARAPACE_DEV_TOKEN_SECRET", DEV_SECRET.to_owned()),
        ("CARAPACE_DATA_DIR", data.display().to_string()),
        ("CARAPACE_LOG_LEVEL", "warn".to_owned()),
        ("CARAPACE_RATE_LIMIT_API_PER_MINUTE", "600000".to_owned()),
        ("CARAPACE_RATE_LIMIT_API_BURST", "100000".to_owned()),
    ]
}

/// Starts `carapace serve` and returns it with its address.
fn serve(env: &[(&'static str, String)], cwd: &std::path::Path) -> (Served, String) {
    let mut child = Command::new(BIN)
        .current_dir(cwd)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = child.stdout.take().unwrap_or_else(|| panic!("stdout"));
    let first = BufReader::new(stdout)
        .lines()
        .next()
        .and_then(Result::ok)
        .unwrap_or_default();
    let addr = first
        .split("http://")
        .nth(1)
        .unwrap_or_else(|| panic!("banner: {first}"))
        .trim()
        .to_owned();
    (Served(child), addr)
}

fn token(org: OrgId) -> String {
    let tokens = DevTokens::new(&SecretString::from(DEV_SECRET)).unwrap_or_else(|e| panic!("{e}"));
    let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
    let subject =
        carapace_tenancy::SubjectId::parse("clinician-cleo").unwrap_or_else(|e| panic!("{e}"));
    tokens
        .mint_session(
            org,
            &subject,
            &[Role::Clinician],
            true,
            now,
            Duration::from_secs(3600),
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .expose_secret()
        .to_owned()
}

/// Busy clients against `addr` until `stop`; errors (the server going
/// away) are expected and ignored.
fn load(
    addr: &str,
    token: &str,
    stop: &Arc<AtomicBool>,
    created: &Arc<std::sync::atomic::AtomicUsize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..6)
        .map(|n| {
            let (addr, token, stop, created) = (
                addr.to_owned(),
                token.to_owned(),
                stop.clone(),
                created.clone(),
            );
            tokio::spawn(async move {
                let http = reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_else(|e| panic!("{e}"));
                while !stop.load(Ordering::Relaxed) {
                    let created_now = http
                        .post(format!("http://{addr}/api/v1/patients"))
                        .bearer_auth(&token)
                        .json(&patient(&format!("Load{n}")))
                        .send()
                        .await;
                    let Ok(answer) = created_now else { continue };
                    let body: serde_json::Value = answer.json().await.unwrap_or_default();
                    if let Some(id) = body["id"].as_str() {
                        created.fetch_add(1, Ordering::Relaxed);
                        let _ = http
                            .get(format!("http://{addr}/api/v1/patients/{id}"))
                            .bearer_auth(&token)
                            .send()
                            .await;
                    }
                }
            })
        })
        .collect()
}

/// Holds `org`'s chain lock on PostgreSQL (as another instance's chainer
/// would, mid-pass) for `hold`, from now.
async fn hold_chain_lock(url: &str, org: OrgId, hold: Duration) -> tokio::task::JoinHandle<()> {
    use sea_orm::{ConnectionTrait as _, TransactionTrait as _};
    let conn = sea_orm::Database::connect(url.to_owned())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let tx = conn.begin().await.unwrap_or_else(|e| panic!("{e}"));
    tx.execute_unprepared(&format!(
        "SELECT pg_advisory_xact_lock(1633906017, hashtext('{org}'))"
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    tokio::spawn(async move {
        tokio::time::sleep(hold).await;
        let _ = tx.commit().await;
        let _ = conn.close().await;
    })
}

/// Twenty stops under load on `db_url`; with `lock_url` (PostgreSQL), every
/// other stop finds the organization's chain held by another chainer for
/// a moment.
async fn stops_under_load(db_url: &str, dir: &std::path::Path, lock_url: Option<&str>) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let db = Database::connect(&DbSettings::new(db_url.to_owned().into()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    if db_url.starts_with("sqlite:") {
        db.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    }
    let slug = format!("stop-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let org = SeaOrganizations::new(db.clone())
        .create(NewOrganization {
            slug: OrgSlug::parse(&slug).unwrap_or_else(|e| panic!("{e}")),
            name: OrgName::parse("Stop Clinic").unwrap_or_else(|e| panic!("{e}")),
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .id;
    let token = token(org);
    let env = env(db_url, &dir.join("data"));
    // The key the server generates in its data directory (dev profile).
    let key_settings = carapace_server::settings::Settings {
        data_dir: dir.join("data"),
        ..carapace_server::settings::Settings::default()
    };
    let mut chained = 0;
    for round in 0..ROUNDS {
        let (mut served, addr) = serve(&env, dir);
        let stop = Arc::new(AtomicBool::new(false));
        let created = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let clients = load(&addr, &token, &stop, &created);
        // The clients are at work (however slow the machine)...
        let started = Instant::now();
        while created.load(Ordering::Relaxed) < 3 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "round {round}: no load"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // ...then stop at a different moment each round, clients still busy.
        tokio::time::sleep(Duration::from_millis(
            200 + 37 * u64::try_from(round).unwrap_or(0),
        ))
        .await;
        let held = match lock_url {
            Some(url) if round % 2 == 1 => {
                Some(hold_chain_lock(url, org, Duration::from_millis(700)).await)
            }
            _ => None,
        };
        let pid = served.0.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(killed.success());
        let started = Instant::now();
        let status = loop {
            if let Some(status) = served.0.try_wait().unwrap_or_else(|e| panic!("{e}")) {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "round {round}: no exit"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            let _ = c.await;
        }
        if let Some(held) = held {
            let _ = held.await;
        }
        assert!(status.success(), "round {round}: exit {status}");
        let key = carapace_server::server::audit_signing_key(&key_settings)
            .unwrap_or_else(|e| panic!("{e}"));
        let verified = carapace_infra::audit::verify_org(&db, org, &key.verifying_key())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(verified.pending, 0, "round {round}: events left unchained");
        let ok = verified
            .chain
            .unwrap_or_else(|f| panic!("round {round}: {f}"));
        assert!(ok.entries > chained, "round {round}: the load wrote events");
        chained = ok.entries;
    }
    // The whole range exports every event, checked offline.
    let export = dir.join("export");
    let out = Command::new(BIN)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args([
            "audit",
            "export",
            "--org",
            &slug,
            "--from",
            "2000-01-01T00:00:00Z",
            "--to",
            "2100-01-01T00:00:00Z",
            "--out",
        ])
        .arg(&export)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "exported {chained} events (positions 1..={chained})"
        )),
        "{stdout}"
    );
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_stops_under_load_leave_nothing_unchained_on_sqlite() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("sqlite://{}/carapace.db", dir.path().display());
    stops_under_load(&url, dir.path(), None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_stops_under_load_leave_nothing_unchained_on_postgres() {
    let Some(pg) = carapace_testkit::postgres_fresh("stops_under_load", true).await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    stops_under_load(&pg.app_url, dir.path(), Some(&pg.owner_url)).await;
}

/// `carapace audit export` of everything of `slug`, on the app's database.
fn export_everything(
    app: &crate::support::TestApp,
    slug: &str,
    out: &std::path::Path,
) -> std::process::Output {
    let dir = app.data_dir.parent().unwrap_or_else(|| panic!("data dir"));
    Command::new(BIN)
        .current_dir(dir)
        .env_clear()
        .env(
            "CARAPACE_DATABASE_URL",
            format!("sqlite://{}/carapace.db", dir.display()),
        )
        .env("CARAPACE_DATA_DIR", app.data_dir.display().to_string())
        .args([
            "audit",
            "export",
            "--org",
            slug,
            "--from",
            "2000-01-01T00:00:00Z",
            "--to",
            "2100-01-01T00:00:00Z",
            "--out",
        ])
        .arg(out)
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn an_export_chains_what_is_pending_or_refuses_naming_what_it_would_miss() {
    let Some(app) =
        crate::support::spawn_app(crate::support::Backend::Sqlite, "export_pending").await
    else {
        return;
    };
    let org = app.org().await;
    let token = app.token(&org, Role::Clinician);
    for name in ["Ann", "Bea", "Cid"] {
        app.new_patient(&token, name).await;
    }
    // No chainer ran (the test app has none): the export chains first.
    let out_dir = app.data_dir.join("export-1");
    let out = export_everything(&app, &org.slug, &out_dir);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("exported 3 events (positions 1..=3)"),
        "{stdout}"
    );

    // An event the chain can no longer take (recorded long before its
    // head, as a bug or an intruder might leave it): refused, named, and
    // nothing written.
    let raw = sea_orm::Database::connect(format!(
        "sqlite://{}/carapace.db",
        app.data_dir
            .parent()
            .unwrap_or_else(|| panic!("dir"))
            .display()
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    use sea_orm::ConnectionTrait as _;
    raw.execute_unprepared(
        "INSERT INTO audit_events (org_id, id, recorded_at, actor, action, resource_type, resource_id, outcome, body)
         SELECT org_id, randomblob(16), '2001-01-01 00:00:00+00:00', actor, action, resource_type, resource_id, outcome, body
         FROM audit_events LIMIT 1",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let out_dir = app.data_dir.join("export-2");
    let out = export_everything(&app, &org.slug, &out_dir);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refusing to export: 1 events in the range are not chained"),
        "{stderr}"
    );
    assert!(!out_dir.exists(), "nothing written");
    app.stop().await;
}
