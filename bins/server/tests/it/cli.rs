//! The binary itself: help, configuration refusals, org and token
//! commands, serving, and graceful shutdown.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod keys;

const BIN: &str = env!("CARGO_BIN_EXE_carapace");

/// The binary in a fresh working directory with a clean environment.
fn carapace(dir: &tempfile::TempDir, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`carapace`], writing `input` to standard input.
fn with_stdin(dir: &tempfile::TempDir, env: &[(&str, &str)], args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
    }
    child.wait_with_output().unwrap_or_else(|e| panic!("{e}"))
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_works_without_a_database() {
    let dir = tmp();
    // A database URL that cannot be reached: --help must not care.
    let env = [(
        "CARAPACE_DATABASE_URL",
        "postgres://nobody@127.0.0.1:1/none",
    )];
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["dev-token", "--help"],
        &["--version"],
    ] {
        let out = carapace(&dir, &env, args);
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert!(!out.stdout.is_empty());
    }
    let out = carapace(&dir, &env, &["config", "check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!dir.path().join("data").exists(), "nothing was created");
}

#[test]
fn production_with_sqlite_and_dev_tokens_refuses_with_one_line_each() {
    let dir = tmp();
    let env = [
        ("CARAPACE_PROFILE", "production"),
        ("CARAPACE_DEV_TOKENS", "true"),
    ];
    let out = carapace(&dir, &env, &["serve"]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let lines: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with("configuration error: "))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("CARAPACE_DEV_TOKENS")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("CARAPACE_DATABASE_URL") && l.contains("SQLite")),
        "{err}"
    );
    assert_eq!(
        lines
            .iter()
            .filter(|l| l.contains("CARAPACE_DEV_TOKENS"))
            .count(),
        1
    );
    assert!(err.contains("refusing to start"));
    assert!(
        !dir.path().join("data").exists(),
        "refused before touching anything"
    );
}

#[test]
fn production_postgres_without_tls_is_refused() {
    let dir = tmp();
    let base = [
        ("CARAPACE_PROFILE", "production"),
        (
            "CARAPACE_DATABASE_URL",
            "postgres://carapace_app@db.internal/carapace",
        ),
    ];
    let out = carapace(&dir, &base, &["serve"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("CARAPACE_DATABASE_TLS"),
        "{}",
        text(&out.stderr)
    );

    // TLS that verifies no certificate (or no host name) is refused too.
    for unverified in ["require", "verify-ca"] {
        let mut tls = base.to_vec();
        tls.push(("CARAPACE_DATABASE_TLS", unverified));
        let out = carapace(&dir, &tls, &["config", "check"]);
        assert_ne!(out.status.code(), Some(0), "{unverified}");
        assert!(
            text(&out.stderr).contains("verify-full"),
            "{unverified}: {}",
            text(&out.stderr)
        );
    }

    let mut tls = base.to_vec();
    tls.push(("CARAPACE_DATABASE_TLS", "verify-full"));
    let out = carapace(&dir, &tls, &["config", "check"]);
    assert!(
        !text(&out.stderr).contains("CARAPACE_DATABASE_TLS"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn config_check_redacts_secrets() {
    let dir = tmp();
    std::fs::write(
        dir.path().join("carapace.toml"),
        "cursor_secret = \"file-cursor-secret-0123456789abcdef\"\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let env = [
        (
            "CARAPACE_DATABASE_URL",
            "postgres://carapace_app:pg-password-hunter2@db/carapace",
        ),
        (
            "CARAPACE_DEV_TOKEN_SECRET",
            "env-dev-secret-0123456789abcdefghij",
        ),
        ("CARAPACE_BIND", "127.0.0.1:9999"),
    ];
    let out = carapace(&dir, &env, &["config", "check"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(shown["bind"], "127.0.0.1:9999", "environment applied");
    assert_eq!(
        shown["cursor_secret"], "[redacted]",
        "file applied, redacted"
    );
    assert_eq!(shown["dev_token_secret"], "[redacted]");
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    for secret in ["hunter2", "env-dev-secret", "file-cursor-secret"] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }
}

#[test]
fn short_dev_token_secret_is_refused() {
    let dir = tmp();
    let out = carapace(
        &dir,
        &[("CARAPACE_DEV_TOKEN_SECRET", "too-short")],
        &["serve"],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("CARAPACE_DEV_TOKEN_SECRET: is 9 bytes; secrets must be at least 32 bytes"),
        "{err}"
    );
    assert!(!err.contains("too-short"));
}

#[test]
fn unknown_setting_is_refused_by_name() {
    let dir = tmp();
    let out = carapace(
        &dir,
        &[("CARAPACE_DATABSE_URL", "sqlite://x")],
        &["config", "check"],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("databse_url"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn dev_token_is_refused_in_production() {
    let dir = tmp();
    let env = [
        ("CARAPACE_PROFILE", "production"),
        ("CARAPACE_DATABASE_URL", "postgres://x@db/c"),
        ("CARAPACE_DATABASE_TLS", "verify-full"),
        (
            "CARAPACE_CURSOR_SECRET",
            "cursor-secret-0123456789abcdef-0123",
        ),
    ];
    let out = carapace(
        &dir,
        &env,
        &["dev-token", "--org", "acme", "--role", "admin"],
    );
    assert_ne!(out.status.code(), Some(0));
    assert!(out.stdout.is_empty(), "no token printed");
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
async fn org_create_dev_token_serve_and_sigterm_as_the_readme_shows() {
    let dir = tmp();
    let env = [
        ("CARAPACE_BIND", "127.0.0.1:0"),
        ("CARAPACE_LOG_FORMAT", "json"),
    ];
    let out = carapace(
        &dir,
        &env,
        &["org", "create", "--name", "Demo Clinic", "--slug", "demo"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let org: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(org["slug"], "demo");
    assert!(uuid::Uuid::parse_str(org["id"].as_str().unwrap_or_default()).is_ok());

    let again = carapace(
        &dir,
        &env,
        &["org", "create", "--name", "Demo", "--slug", "demo"],
    );
    assert_eq!(again.status.code(), Some(1), "duplicate slug refused");
    let bad = carapace(
        &dir,
        &env,
        &["org", "create", "--name", "Demo", "--slug", "Not A Slug"],
    );
    assert_eq!(bad.status.code(), Some(2));

    // Every staff session needs MFA for PHI by default: the README's
    // tokens say so (`--mfa`), and only an admin deletes.
    let out = carapace(
        &dir,
        &env,
        &["dev-token", "--org", "demo", "--role", "clinician", "--mfa"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let token = text(&out.stdout).trim().to_owned();
    assert_eq!(token.split('.').count(), 3);
    let out = carapace(
        &dir,
        &env,
        &["dev-token", "--org", "demo", "--role", "admin", "--mfa"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let admin = text(&out.stdout).trim().to_owned();
    let missing = carapace(
        &dir,
        &env,
        &["dev-token", "--org", "nope", "--role", "clinician"],
    );
    assert_eq!(missing.status.code(), Some(2));

    // A local account, password from standard input; weak ones are refused.
    for (password, code) in [("password1234\n", 2), ("a long enough passphrase\n", 0)] {
        let out = with_stdin(
            &dir,
            &env,
            &[
                "user",
                "create",
                "--org",
                "demo",
                "--email",
                "doc@example.org",
                "--role",
                "clinician",
            ],
            password,
        );
        assert_eq!(out.status.code(), Some(code), "{}", text(&out.stderr));
        assert!(
            !text(&out.stdout).contains("passphrase") && !text(&out.stderr).contains("passphrase")
        );
    }

    let child = Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .envs(env)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    let mut served = Served(child);
    let stdout = served.0.stdout.take().unwrap_or_else(|| panic!("stdout"));
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().and_then(Result::ok).unwrap_or_default();
    let addr = first
        .split("http://")
        .nth(1)
        .unwrap_or_else(|| panic!("banner: {first}"))
        .trim()
        .to_owned();

    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    let ready = http
        .get(format!("http://{addr}/health/ready"))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ready.status(), 200);
    // The README's walkthrough, step by step.
    let created = http
        .post(format!("http://{addr}/api/v1/patients"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"given_name":"Jane","family_name":"Roe","birth_date":"1980-02-03","member_id":"M-778"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(created.status(), 201);
    let body: Value = created.json().await.unwrap_or_else(|e| panic!("{e}"));
    let patient = format!(
        "http://{addr}/api/v1/patients/{}",
        body["id"].as_str().unwrap_or_default()
    );
    let read = http
        .get(&patient)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(read.status(), 200);
    let found = http
        .get(format!(
            "http://{addr}/api/v1/patients?member_id=M-778&limit=20"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found.status(), 200);
    let changed = http
        .patch(&patient)
        .bearer_auth(&token)
        .json(&serde_json::json!({"phone": "+1 555 010 0100"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(changed.status(), 200);
    let by_clinician = http
        .delete(&patient)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(by_clinician.status(), 403, "only admins delete");
    let deleted = http
        .delete(&patient)
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(deleted.status(), 204);

    let login = http
        .post(format!("http://{addr}/api/v1/auth/login"))
        .json(&serde_json::json!({"org": "demo", "email": "doc@example.org", "password": "a long enough passphrase"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(login.status(), 200);

    // SIGTERM: the server drains and exits 0.
    let pid = served.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(killed.success());
    let started = Instant::now();
    loop {
        if let Some(status) = served.0.try_wait().unwrap_or_else(|e| panic!("{e}")) {
            assert!(status.success(), "exit after SIGTERM: {status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The drained requests' audit events were chained and signed on the way out.
    let verified = carapace(&dir, &env, &["audit", "verify", "--org", "demo"]);
    assert!(verified.status.success(), "{}", text(&verified.stdout));
    assert!(
        text(&verified.stdout).contains(": ok: 9 events chained (head 9), ")
            && text(&verified.stdout).contains("signed checkpoints matched, 0 awaiting chaining"),
        "{}",
        text(&verified.stdout)
    );
    // An export of everything, checked offline; an edited line is named.
    let exported = carapace(
        &dir,
        &env,
        &[
            "audit",
            "export",
            "--org",
            "demo",
            "--from",
            "2000-01-01T00:00:00Z",
            "--to",
            "2100-01-01T00:00:00Z",
            "--out",
            "export-1",
        ],
    );
    assert!(exported.status.success(), "{}", text(&exported.stderr));
    assert!(text(&exported.stdout).contains("exported 9 events (positions 1..=9)"));
    let checked = carapace(&dir, &env, &["audit", "verify", "--export", "export-1"]);
    assert!(checked.status.success(), "{}", text(&checked.stdout));
    let events_file = dir.path().join("export-1/events.ndjson");
    let original = std::fs::read_to_string(&events_file).unwrap_or_default();
    std::fs::write(&events_file, original.replacen("allowed", "denied", 1))
        .unwrap_or_else(|e| panic!("{e}"));
    let edited = carapace(&dir, &env, &["audit", "verify", "--export", "export-1"]);
    assert_eq!(edited.status.code(), Some(1));
    assert!(
        text(&edited.stdout).contains("export TAMPERED: line 1 (position 1): event modified"),
        "{}",
        text(&edited.stdout)
    );

    // An attacker with the database file edits history: named, exit 1.
    let raw = sea_orm::Database::connect(format!(
        "sqlite://{}/data/carapace.db",
        dir.path().display()
    ))
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    use sea_orm::ConnectionTrait as _;
    raw.execute_unprepared(
        "DROP TRIGGER audit_events_no_update;
         UPDATE audit_events SET body = replace(body, 'patient.read', 'patient.list')",
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    raw.close().await.unwrap_or_else(|e| panic!("{e}"));
    let tampered = carapace(&dir, &env, &["audit", "verify"]);
    assert_eq!(tampered.status.code(), Some(1));
    assert!(
        text(&tampered.stdout).contains("TAMPERED at position 4: event modified"),
        "{}",
        text(&tampered.stdout)
    );
}

#[tokio::test]
async fn serve_refuses_a_superuser_postgres_role() {
    let Some(pg) = carapace_testkit::postgres("serve_refuses_a_superuser_postgres_role").await
    else {
        return;
    };
    let dir = tmp();
    let env = [
        ("CARAPACE_DATABASE_URL", pg.owner_url.as_str()),
        ("CARAPACE_BIND", "127.0.0.1:0"),
    ];
    let out = carapace(&dir, &env, &["serve"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("refusing to serve with an unsafe database posture"),
        "{err}"
    );
    assert!(err.contains("superuser"), "{err}");
}

/// `carapace health` (the container image's HEALTHCHECK) says ready only
/// when the bound address answers 200: not when nothing listens, not when
/// something listens and never answers (within its timeout), and a
/// wildcard bind is asked on loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_says_ready_only_when_the_server_answers() {
    let Some(app) = crate::support::spawn_app(crate::support::Backend::Sqlite, "cli_health").await
    else {
        return;
    };
    let port = app.base.rsplit(':').next().unwrap_or_default().to_owned();
    let dir = tmp();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap_or_default();
    let health = |bind: String| {
        let dir = &dir;
        async move {
            let env = [
                ("CARAPACE_BIND", bind.as_str()),
                ("CARAPACE_DATA_DIR", data),
            ];
            let started = Instant::now();
            let out = tokio::task::block_in_place(|| carapace(dir, &env, &["health"]));
            (out, started.elapsed())
        }
    };
    for bind in [format!("127.0.0.1:{port}"), format!("0.0.0.0:{port}")] {
        let (out, _) = health(bind.clone()).await;
        assert!(out.status.success(), "{bind}: {}", text(&out.stderr));
        assert_eq!(text(&out.stdout).trim(), "ready");
    }
    // Nothing listens.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let closed = free.local_addr().unwrap_or_else(|e| panic!("{e}"));
    drop(free);
    let (out, _) = health(closed.to_string()).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("not ready"),
        "{}",
        text(&out.stderr)
    );
    // Something listens and never answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let (out, took) = health(hung.local_addr().map(|a| a.to_string()).unwrap_or_default()).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    drop(hung);
    app.stop().await;
}
