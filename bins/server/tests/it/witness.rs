//! The audit witness through the binary and the server: `serve` anchors
//! every checkpoint in the bucket (the last one on SIGTERM), `audit
//! verify` compares the database with it and names a cut tail that the
//! database alone no longer shows; while checkpoints wait longer than the
//! bound for an unreachable witness, readiness fails and PHI routes answer
//! 503 on every instance, until the witness is back.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use carapace_auth::Role;
use carapace_server::settings::Settings;
use carapace_testkit::relay::Relay;
use carapace_testkit::s3::LocalS3;
use serde_json::Value;

use crate::support::{Backend, TestApp, patient, problem, settings_with, spawn_with};

const BIN: &str = env!("CARGO_BIN_EXE_carapace");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The witness settings of `s3` under `prefix`, at `endpoint`.
fn witness_env(s3: &LocalS3, endpoint: &str, prefix: &str) -> Vec<(String, String)> {
    [
        (
            "CARAPACE_AUDIT_WITNESS_URL",
            format!("s3://{}/{prefix}", s3.bucket),
        ),
        ("CARAPACE_AUDIT_WITNESS_ENDPOINT", endpoint.to_owned()),
        ("CARAPACE_AUDIT_WITNESS_ALLOW_LOOPBACK", "true".to_owned()),
        ("CARAPACE_AUDIT_WITNESS_REGION", "us-east-1".to_owned()),
        ("CARAPACE_AUDIT_WITNESS_ACCESS_KEY_ID", "test".to_owned()),
        (
            "CARAPACE_AUDIT_WITNESS_SECRET_ACCESS_KEY",
            "test".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn carapace(
    dir: &tempfile::TempDir,
    env: &[(String, String)],
    args: &[&str],
) -> std::process::Output {
    Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// A served binary, stopped on drop.
struct Served(std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_anchors_every_checkpoint_and_verify_names_a_cut_tail() {
    let Some(s3) = LocalS3::start("serve_anchors_every_checkpoint").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut env = witness_env(&s3, s3.endpoint(), "cli");
    env.push(("CARAPACE_BIND".into(), "127.0.0.1:0".into()));
    env.push(("CARAPACE_AUDIT_ANCHOR_EVERY_SECS".into(), "1".into()));
    let out = carapace(
        &dir,
        &env,
        &["org", "create", "--name", "Demo", "--slug", "demo"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let org: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    let org = org["id"].as_str().unwrap_or_default().to_owned();
    let out = carapace(
        &dir,
        &env,
        &["dev-token", "--org", "demo", "--role", "clinician", "--mfa"],
    );
    let token = text(&out.stdout).trim().to_owned();

    let child = Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut served = Served(child);
    let stdout = served.0.stdout.take().unwrap_or_else(|| panic!("stdout"));
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
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let ready: Value = http
        .get(format!("http://{addr}/health/ready"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        ready["checks"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["name"] == "audit_witness"
                && c["status"].as_str().is_some_and(|s| s.starts_with("ok")))),
        "{ready}"
    );
    let created: Value = http
        .post(format!("http://{addr}/api/v1/patients"))
        .bearer_auth(&token)
        .json(&patient("Jane"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let path = format!(
        "http://{addr}/api/v1/patients/{}",
        created["id"].as_str().unwrap_or_default()
    );
    // The chainer anchors while serving: the first checkpoint shows up.
    let prefix = format!("cli/{org}/");
    let started = Instant::now();
    while s3.keys(&prefix).await.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no checkpoint anchored while serving"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for _ in 0..6 {
        let read = http
            .get(&path)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(read.status(), 200);
    }
    let killed = Command::new("kill")
        .args(["-TERM", &served.0.id().to_string()])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(killed.success());
    let started = Instant::now();
    loop {
        if let Some(status) = served.0.try_wait().unwrap_or_else(|e| panic!("{e}")) {
            assert!(status.success(), "exit after SIGTERM: {status}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The last pass on the way out signed and anchored the head.
    let verified = carapace(&dir, &env, &["audit", "verify", "--org", "demo"]);
    let shown = text(&verified.stdout);
    assert!(verified.status.success(), "{shown}");
    // org.create, the patient's create and six reads.
    let head = 8;
    assert!(
        shown.contains(&format!(": ok: {head} events chained (head {head}), ")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("{org}: witness: ok: "))
            && shown.contains(&format!("(anchored head {head}), 0 awaiting anchoring")),
        "{shown}"
    );
    assert!(
        s3.keys(&prefix)
            .await
            .contains(&format!("{prefix}{head:020}-head.json"))
    );

    // The superuser of the file cuts the newest three events, their chain
    // rows and the checkpoints that vouched for them.
    let raw = sea_orm::Database::connect(format!(
        "sqlite://{}/data/carapace.db",
        dir.path().display()
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    use sea_orm::ConnectionTrait as _;
    raw.execute_unprepared(
        "DROP TRIGGER audit_events_no_delete; DROP TRIGGER audit_chain_no_delete;
         DROP TRIGGER audit_checkpoints_no_delete;
         DELETE FROM audit_events WHERE id IN (SELECT event_id FROM audit_chain WHERE position > 5);
         DELETE FROM audit_chain WHERE position > 5;
         DELETE FROM audit_checkpoints WHERE position > 5;",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    raw.close().await.unwrap_or_else(|e| panic!("{e}"));
    // The database alone agrees with itself...
    let alone: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| !k.starts_with("CARAPACE_AUDIT_WITNESS"))
        .cloned()
        .collect();
    let blind = carapace(&dir, &alone, &["audit", "verify"]);
    assert!(blind.status.success(), "{}", text(&blind.stdout));
    // ...the witness does not.
    let cut = carapace(&dir, &env, &["audit", "verify"]);
    let shown = text(&cut.stdout);
    assert_eq!(cut.status.code(), Some(1), "{shown}");
    assert!(
        shown.contains(&format!(
            "{org}: WITNESS: chain ends at 5, witness anchored head at {head} (link "
        )) && shown.contains(&format!("positions 6..={head} are missing")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("witnessed head checkpoint at {head} (signed "))
            && shown.contains("is missing from the database"),
        "{shown}"
    );
    // A witness that cannot be read is a failure too, never a pass.
    let mut away = env.clone();
    away.retain(|(k, _)| k != "CARAPACE_AUDIT_WITNESS_ENDPOINT");
    away.push((
        "CARAPACE_AUDIT_WITNESS_ENDPOINT".into(),
        "http://127.0.0.1:9/".into(),
    ));
    let unreachable = carapace(&dir, &away, &["audit", "verify", "--org", "demo"]);
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(
        text(&unreachable.stdout).contains("WITNESS UNAVAILABLE: witness unreachable"),
        "{}",
        text(&unreachable.stdout)
    );
}

/// Settings of an app on `url` whose witness is `s3` behind `relay`, with
/// a backlog bound of two seconds.
fn gated(url: String, s3: &LocalS3, relay: &Relay, dir: &tempfile::TempDir) -> Settings {
    let mut s = settings_with(url);
    s.data_dir = dir.path().join("data");
    s.audit_witness_url = Some(format!("s3://{}/gate", s3.bucket));
    s.audit_witness_endpoint = Some(format!("http://{}/", relay.addr()));
    s.audit_witness_allow_loopback = true;
    s.audit_witness_region = Some("us-east-1".into());
    s.audit_witness_access_key_id = Some("test".into());
    s.audit_witness_secret_access_key = Some("test".to_owned().into());
    s.audit_witness_max_backlog_secs = 2;
    s.audit_anchor_every_secs = 1;
    assert!(s.problems().is_empty(), "{:?}", s.problems());
    s
}

async fn ready(app: &TestApp) -> (u16, Value) {
    let res = app.get_public("/health/ready").await;
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or_else(|e| panic!("{e}")))
}

/// Waits (up to 10 s) until `path` answers `status` to `token` on `app`.
async fn until(app: &TestApp, path: &str, token: &str, status: u16) -> reqwest::Response {
    let started = Instant::now();
    loop {
        let res = app.get(path, token).await;
        if res.status().as_u16() == status {
            return res;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{path} stayed {}",
            res.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn backlog_closes_phi_routes(backend: Backend, test: &str) {
    let Some(s3) = LocalS3::start(test).await else {
        return;
    };
    let relay = Relay::start(&s3.authority()).await;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    // PostgreSQL: a database of its own (the gate reads the whole queue),
    // served by two instances.
    let (url, instances) = match backend {
        Backend::Sqlite => (format!("sqlite://{}/carapace.db", dir.path().display()), 1),
        Backend::Postgres => {
            let Some(pg) = carapace_testkit::postgres_fresh(test, true).await else {
                return;
            };
            (pg.app_url, 2)
        }
    };
    let settings = gated(url, &s3, &relay, &dir);
    let mut apps = Vec::new();
    for _ in 0..instances {
        apps.push(spawn_with(settings.clone(), None).await);
    }
    let app = &apps[0];
    let org = app.org().await;
    let token = app.token(&org, Role::Clinician);
    let compliance = app.token(&org, Role::Compliance);
    let id = app.new_patient(&token, "Jane").await;
    let path = format!("/api/v1/patients/{id}");
    let chainer = || {
        carapace_server::server::audit_chainer(&settings, &app.db, Some(Duration::ZERO))
            .unwrap_or_else(|e| panic!("{e:#}"))
    };

    // The witness stops answering; the checkpoint of the create waits.
    relay.reset().await;
    chainer().run_once().await.unwrap_or_else(|e| panic!("{e}"));
    let (status, body) = ready(app).await;
    assert_eq!(status, 200, "{body}");
    let witness = body["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["name"] == "audit_witness"))
        .map(|c| c["status"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default();
    assert!(
        witness.starts_with("ok (1 checkpoints waiting for the witness"),
        "{witness}"
    );
    assert_eq!(
        app.get(&path, &token).await.status(),
        200,
        "within the bound"
    );

    // Beyond the bound: PHI closes on every instance, operations stay open.
    for app in &apps {
        let refused = until(app, &path, &token, 503).await;
        assert_eq!(
            refused
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
            Some("30")
        );
        let body = problem(refused, 503).await;
        assert_eq!(body["code"], "audit_witness_backlog");
        let (status, body) = ready(app).await;
        assert_eq!(status, 503);
        let detail = body["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("audit_witness: 1 checkpoints waiting for the witness")
                && detail.contains("over the bound of 2 s"),
            "{detail}"
        );
        assert_eq!(
            app.get("/api/v1/patients?limit=5", &token).await.status(),
            503
        );
        let created = app.create_patient(&token, &patient("Joe")).await;
        assert_eq!(created.status(), 503);
        assert_eq!(app.get("/health/live", &token).await.status(), 200);
        assert_eq!(
            app.get("/api/v1/audit-events?limit=5", &compliance)
                .await
                .status(),
            200,
            "compliance still reads the trail"
        );
    }

    // The witness is back: the next pass drains the queue, PHI reopens.
    relay.restore();
    chainer().run_once().await.unwrap_or_else(|e| panic!("{e}"));
    for app in &apps {
        let (status, body) = ready(app).await;
        assert_eq!(status, 200, "{body}");
        until(app, &path, &token, 200).await;
    }
    assert!(
        !s3.keys(&format!("gate/{}/", org.id)).await.is_empty(),
        "the waiting checkpoints reached the bucket"
    );
    for app in apps {
        app.stop().await;
    }
}

#[tokio::test]
async fn sqlite_a_witness_backlog_over_its_bound_closes_phi_routes_until_it_drains() {
    backlog_closes_phi_routes(Backend::Sqlite, "sqlite_witness_backlog_gate").await;
}

#[tokio::test]
async fn postgres_a_witness_backlog_over_its_bound_closes_phi_routes_on_every_instance() {
    backlog_closes_phi_routes(Backend::Postgres, "postgres_witness_backlog_gate").await;
}
