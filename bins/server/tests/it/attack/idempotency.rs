//! Retrying a creating request must never create twice.
//!
//! - The same `Idempotency-Key` and body again: the first answer, replayed.
//! - The same key with another body: 422, nothing created.
//! - Keys belong to their principal: another caller's equal key is theirs.
//! - Many copies racing: one creates, the others wait or get its answer.
//! - The fault the attack found: the database commits the patient, the
//!   connection dies before the commit's acknowledgement reaches Carapace,
//!   the client gets a 5xx and retries with the same key. The retry is
//!   sent to what was created (303), never a second patient.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use carapace_auth::Role;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::kit::{defaults, on_both};
use crate::support::{TestApp, patient, problem, send, settings_with, spawn_with};

async fn create(app: &TestApp, token: &str, key: &str, body: &Value) -> reqwest::Response {
    send(
        app.http
            .post(app.url("/api/v1/patients"))
            .bearer_auth(token)
            .header("idempotency-key", key)
            .json(body),
    )
    .await
}

on_both!(a_retried_create_is_replayed_never_repeated, defaults);

async fn a_retried_create_is_replayed_never_repeated(app: &TestApp) {
    let org = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let key = format!("\"{}\"", uuid::Uuid::new_v4());
    let first = create(app, &ada, &key, &patient("Ivy")).await;
    assert_eq!(first.status(), 201);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let location = first.headers().get("location").cloned();
    let first: Value = first.json().await.unwrap_or_default();
    for _ in 0..3 {
        let again = create(app, &ada, &key, &patient("Ivy")).await;
        assert_eq!(again.status(), 201);
        assert_eq!(
            again
                .headers()
                .get("idempotent-replayed")
                .and_then(|v| v.to_str().ok()),
            Some("true")
        );
        assert_eq!(again.headers().get("location").cloned(), location);
        assert_eq!(again.json::<Value>().await.unwrap_or_default(), first);
    }
    // The same key with another body: refused, nothing created.
    let other = problem(create(app, &ada, &key, &patient("Eve")).await, 422).await;
    assert_eq!(other["code"], "idempotency_key_reused");
    // Another principal's equal key is their own.
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    let theirs = create(app, &bob, &key, &patient("Ivy")).await;
    assert_eq!(theirs.status(), 201);
    let theirs: Value = theirs.json().await.unwrap_or_default();
    assert_ne!(theirs["id"], first["id"]);
    // Malformed keys are refused before anything happens.
    for bad in ["", "\"\"", &"k".repeat(256), "two words"] {
        let res = problem(create(app, &ada, bad, &patient("Mal")).await, 400).await;
        assert_eq!(res["code"], "bad_header", "{bad:?}");
    }
    // Eight copies at once: one patient.
    let key = uuid::Uuid::new_v4().to_string();
    let race = patient("Race");
    let copies = (0..8).map(|_| create(app, &ada, &key, &race));
    let answers = futures_util::future::join_all(copies).await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 409),
        "{statuses:?}"
    );
    let names: Vec<String> = app
        .all_patients(&app.token(&org, Role::Admin))
        .await
        .iter()
        .map(|p| p["given_name"].as_str().unwrap_or_default().to_owned())
        .collect();
    for name in ["Ivy", "Race"] {
        let n = names.iter().filter(|n| *n == name).count();
        let expected = if name == "Ivy" { 2 } else { 1 };
        assert_eq!(n, expected, "{name}: {names:?}");
    }
    assert!(!names.iter().any(|n| n == "Eve" || n == "Mal"), "{names:?}");
}

/// A PostgreSQL proxy that, once armed with `n`, lets `n - 1` transactions
/// that insert a patient commit normally, then lets the `n`-th commit in
/// the database and cuts the connection instead of passing the commit's
/// acknowledgement on: the write is durable, and Carapace sees a lost
/// connection.
struct CommitEater {
    port: u16,
    armed: Arc<AtomicUsize>,
}

impl CommitEater {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();
        let armed = Arc::new(AtomicUsize::new(0));
        let flag = armed.clone();
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let Ok(outbound) = TcpStream::connect(&target).await else {
                    continue;
                };
                tokio::spawn(pipe(inbound, outbound, flag.clone()));
            }
        });
        Self { port, armed }
    }
}

async fn pipe(inbound: TcpStream, outbound: TcpStream, armed: Arc<AtomicUsize>) {
    let (mut client_rx, mut client_tx) = inbound.into_split();
    let (mut server_rx, mut server_tx) = outbound.into_split();
    let inserting = Arc::new(AtomicBool::new(false));
    let seen = inserting.clone();
    let up = tokio::spawn(async move {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match client_rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if buf[..n]
                .windows(22)
                .any(|w| w == b"INSERT INTO \"patients\"")
            {
                seen.store(true, Ordering::SeqCst);
            }
            if server_tx.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = match server_rx.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        // CommandComplete 'C', length 11, "COMMIT\0".
        let commit = buf[..n].windows(12).any(|w| w == b"C\0\0\0\x0bCOMMIT\0");
        if commit && inserting.swap(false, Ordering::SeqCst) {
            let left = armed
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .unwrap_or(0);
            if left == 1 {
                break; // the acknowledgement is eaten; both ends close
            }
        }
        if client_tx.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    up.abort();
}

/// An app on a fresh PostgreSQL database reached through a [`CommitEater`]
/// (in plain text, so the proxy can read the protocol).
async fn behind_eater(
    test: &str,
    configure: impl FnOnce(&mut carapace_server::settings::Settings),
) -> Option<(TestApp, CommitEater)> {
    let pg = carapace_testkit::postgres_fresh(test, true).await?;
    let mut url = url::Url::parse(&pg.app_url).unwrap_or_else(|e| panic!("{e}"));
    let target = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(5432)
    );
    let eater = CommitEater::start(target).await;
    let _ = url.set_port(Some(eater.port));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut settings = settings_with(url.to_string());
    settings.data_dir = dir.path().join("data");
    settings.database_tls = carapace_infra::TlsMode::Disable;
    configure(&mut settings);
    Some((spawn_with(settings, Some(dir)).await, eater))
}

#[tokio::test]
async fn a_retry_after_a_lost_commit_acknowledgement_creates_nothing() {
    let Some((app, eater)) = behind_eater("idempotency_lost_commit", |_| {}).await else {
        return;
    };
    let org = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let key = uuid::Uuid::new_v4().to_string();

    eater.armed.store(1, Ordering::SeqCst);
    let lost = create(&app, &ada, &key, &patient("Ivy")).await;
    assert!(lost.status().is_server_error(), "{}", lost.status());
    assert_eq!(
        eater.armed.load(Ordering::SeqCst),
        0,
        "the commit was eaten"
    );
    let body = lost.text().await.unwrap_or_default();
    assert!(
        !body.contains("COMMIT") && !body.contains("Connection"),
        "{body}"
    );

    // The patient exists; the retry is sent to it, not made again.
    let retry = create(&app, &ada, &key, &patient("Ivy")).await;
    assert_eq!(retry.status(), 303);
    let location = retry
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(location.starts_with("/api/v1/patients/"), "{location}");
    let read = app.get(&location, &ada).await;
    assert_eq!(read.status(), 200);
    let names: Vec<Value> = app.all_patients(&app.token(&org, Role::Admin)).await;
    assert_eq!(names.len(), 1, "{names:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_shared_commit_whose_acknowledgement_is_lost_is_never_run_again() {
    // One shared transaction at a time: concurrent creates share commits.
    let Some((app, eater)) =
        behind_eater("lost_shared_commit", |s| s.database_group_workers = 1).await
    else {
        return;
    };
    let org = app.org().await;
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    app.new_patient(&ada, "Warm").await;

    // The first create runs alone; the others wait and share the next
    // commit, which is the one eaten.
    eater.armed.store(2, Ordering::SeqCst);
    let bodies: Vec<Value> = (0..16).map(|i| patient(&format!("Batch{i:02}"))).collect();
    let creates = bodies.iter().map(|body| {
        send(
            app.http
                .post(app.url("/api/v1/patients"))
                .bearer_auth(&ada)
                .json(body),
        )
    });
    let answers = futures_util::future::join_all(creates).await;
    assert_eq!(eater.armed.load(Ordering::SeqCst), 0, "a commit was eaten");
    // Whatever the eaten commit held is there once; nothing ran twice.
    let names: Vec<String> = app
        .all_patients(&app.token(&org, Role::Admin))
        .await
        .iter()
        .map(|p| p["given_name"].as_str().unwrap_or_default().to_owned())
        .collect();
    for i in 0..16 {
        let name = format!("Batch{i:02}");
        let n = names.iter().filter(|n| **n == name).count();
        assert!(n <= 1, "{name} created {n} times: {names:?}");
    }
    // Its requests learn that the outcome is unknown (503: retry, with an
    // Idempotency-Key to be safe), never a false 409 from running them
    // again into their own committed rows.
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    let failed = statuses.iter().filter(|s| **s == 503).count();
    assert!(failed > 1, "the eaten commit was shared: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 503),
        "{statuses:?}"
    );
    app.stop().await;
}
