//! Data-key rotation covers every sealed column (#18 item 3).
//!
//! - The schema holds no column that can hold a ciphertext (bytea / blob)
//!   that is neither in the registry of sealed columns
//!   (`carapace_infra::sealed::REGISTRY`) nor in the allow-list below, each
//!   entry with its reason: a new sealed column cannot miss rotation.
//! - Through the binary, an organization with a row in every sealed table
//!   (made through the API) is rotated: interrupted after its first
//!   progress line, then resumed; the database (read as the superuser,
//!   past row-level security) holds no row or ciphertext of it under the
//!   old version; `keys status` says so; everything reads back through the
//!   API and search finds the patient, at every step; another
//!   organization's rows stay under its own key; `keys retire` refuses
//!   the current version, a version too recently replaced, and a version a
//!   row still uses (naming the table and count), then destroys it, and
//!   the data still reads.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};

use carapace_auth::Role;
use carapace_infra::sealed::{REGISTRY, SealedTable, VersionAt};
use carapace_tenancy::OrgId;
use sea_orm::{ConnectionTrait as _, DbBackend, Statement, Value};
use serde_json::{Value as Json, json};
use time::format_description::well_known::Rfc3339;

use carapace_testkit::voice::{VoiceApi, signed_callback, wav};

use crate::support::{Backend, Org, TestApp, send, spawn_app_with};

const BIN: &str = env!("CARGO_BIN_EXE_carapace");

/// Columns that can hold bytes but are not ciphertexts under an
/// organization's data key, each with the reason. Anything else of type
/// bytea (PostgreSQL) or blob/bytea (SQLite) must be in the registry.
const NOT_DATA_KEY_CIPHERTEXT: &[(&str, &str, &str)] = &[
    (
        "org_keys",
        "wrapped_dek",
        "the data key itself, wrapped by the key-encryption key (moved by `keys rotate --kek`)",
    ),
    (
        "org_keys",
        "wrapped_index_key",
        "the blind-index root key, wrapped by the key-encryption key",
    ),
    (
        "users",
        "totp_seed",
        "sealed by the key-encryption key bound to org and user, not by a data key",
    ),
    (
        "patient_id_hashes",
        "hash",
        "SHA-256 of a patient id (cross-organization presence marker)",
    ),
    ("refresh_tokens", "hash", "hash of a refresh token"),
    (
        "refresh_tokens",
        "successor",
        "hash of the successor refresh token",
    ),
    ("password_resets", "hash", "hash of a reset code"),
    ("recovery_codes", "hash", "hash of an MFA recovery code"),
    ("service_keys", "hash", "hash of a service key"),
    ("calendar_feeds", "token_hash", "hash of a feed token"),
    (
        "login_addresses",
        "address_hash",
        "keyed hash of a client address",
    ),
    (
        "login_address_failures",
        "address_hash",
        "keyed hash of a client address",
    ),
    (
        "idempotency_keys",
        "key_hash",
        "hash of an Idempotency-Key with its principal",
    ),
    (
        "idempotency_keys",
        "request_hash",
        "fingerprint (hash) of the first request",
    ),
    ("audit_chain", "leaf", "hash of an audit event"),
    ("audit_chain", "link", "hash-chain link"),
    ("audit_checkpoints", "link", "hash-chain link"),
    (
        "audit_checkpoints",
        "signature",
        "Ed25519 signature of a checkpoint",
    ),
];

/// Every (table, column) that can hold bytes, after all migrations.
async fn byte_columns(conn: &sea_orm::DatabaseConnection) -> Vec<(String, String)> {
    let backend = conn.get_database_backend();
    let sql = match backend {
        DbBackend::Postgres => {
            "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
             WHERE table_schema = current_schema() AND data_type = 'bytea' ORDER BY 1, 2"
        }
        _ => {
            "SELECT m.name AS t, p.name AS c FROM sqlite_master m, pragma_table_info(m.name) p \
             WHERE m.type = 'table' AND (lower(p.type) LIKE '%blob%' OR lower(p.type) = 'bytea' \
             OR p.type = '') AND m.name NOT LIKE 'sqlite_%' ORDER BY 1, 2"
        }
    };
    conn.query_all_raw(Statement::from_string(backend, sql))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .map(|r| {
            (
                r.try_get::<String>("", "t").unwrap_or_default(),
                r.try_get::<String>("", "c").unwrap_or_default(),
            )
        })
        .collect()
}

/// Every registered (table, column): sealed columns and blind indexes.
fn registered() -> Vec<(&'static str, &'static str)> {
    REGISTRY
        .iter()
        .flat_map(|t| {
            t.columns
                .iter()
                .map(|c| (t.table, c.column))
                .chain(t.blind_indexes.iter().map(|i| (t.table, i.column)))
        })
        .collect()
}

/// The byte columns of the schema that are neither registered nor
/// allowed.
async fn unregistered(conn: &sea_orm::DatabaseConnection) -> Vec<String> {
    let registered = registered();
    byte_columns(conn)
        .await
        .iter()
        .filter(|(t, c)| {
            !registered.contains(&(t.as_str(), c.as_str()))
                && !NOT_DATA_KEY_CIPHERTEXT
                    .iter()
                    .any(|(at, ac, _)| at == t && ac == c)
        })
        .map(|(t, c)| format!("{t}.{c}"))
        .collect()
}

async fn schema_scan(conn: &sea_orm::DatabaseConnection) {
    let found = byte_columns(conn).await;
    assert!(
        found
            .iter()
            .any(|(t, c)| t == "patients" && c == "given_name"),
        "the scan sees the schema: {found:?}"
    );
    let registered = registered();
    let missing = unregistered(conn).await;
    assert!(
        missing.is_empty(),
        "columns that can hold a ciphertext are in neither the registry of sealed columns \
         (crates/infra/src/sealed.rs) nor the allow-list: {missing:?}"
    );
    // And the registry names real columns (and every allow-listed one is
    // still there, so the list does not rot).
    for (t, c) in registered
        .iter()
        .copied()
        .chain(NOT_DATA_KEY_CIPHERTEXT.iter().map(|(t, c, _)| (*t, *c)))
    {
        assert!(
            found.iter().any(|(ft, fc)| ft == t && fc == c),
            "{t}.{c} is registered or allowed but is not a byte column"
        );
    }
}

#[tokio::test]
async fn every_column_that_can_hold_a_ciphertext_is_registered_sqlite() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let url = format!("sqlite://{}/carapace.db", dir.path().display());
    let db =
        carapace_infra::Database::connect(&carapace_infra::DbSettings::new(url.clone().into()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    db.migrate().await.unwrap_or_else(|e| panic!("{e}"));
    db.close().await;
    let conn = sea_orm::Database::connect(url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    schema_scan(&conn).await;
    // A sealed column added without registering it is caught.
    conn.execute_unprepared("ALTER TABLE appointments ADD COLUMN notes bytea")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(unregistered(&conn).await, vec!["appointments.notes"]);
}

#[tokio::test]
async fn every_column_that_can_hold_a_ciphertext_is_registered_postgres() {
    let Some(pg) =
        carapace_testkit::postgres("every_column_that_can_hold_a_ciphertext_is_registered").await
    else {
        return;
    };
    let conn = sea_orm::Database::connect(pg.owner_url.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    schema_scan(&conn).await;
}

/// The binary's environment and a superuser connection for one app.
struct Env {
    vars: Vec<(&'static str, String)>,
    dir: std::path::PathBuf,
    owner: sea_orm::DatabaseConnection,
}

impl Env {
    async fn of(app: &TestApp, backend: Backend, test: &str) -> Self {
        let dir = app
            .data_dir
            .parent()
            .unwrap_or_else(|| panic!("data dir"))
            .to_path_buf();
        let (app_url, owner_url) = match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}/carapace.db", dir.display());
                (url.clone(), url)
            }
            Backend::Postgres => {
                let pg = carapace_testkit::postgres(test)
                    .await
                    .unwrap_or_else(|| panic!("postgres"));
                (pg.app_url.clone(), pg.owner_url.clone())
            }
        };
        let owner = sea_orm::Database::connect(owner_url)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Self {
            vars: vec![
                ("CARAPACE_DATABASE_URL", app_url),
                ("CARAPACE_DATA_DIR", app.data_dir.display().to_string()),
            ],
            dir,
            owner,
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.current_dir(&self.dir)
            .env_clear()
            .envs(self.vars.iter().map(|(k, v)| (*k, v.as_str())))
            .args(args);
        c
    }

    /// Runs the binary off the runtime (the app serves on it meanwhile);
    /// returns the exit code and what it wrote.
    async fn run(&self, args: &[&str]) -> (Option<i32>, String) {
        let mut command = self.command(args);
        let out = tokio::task::spawn_blocking(move || command.output())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_else(|e| panic!("{e}"));
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Starts `args` and kills it right after its first line containing
    /// `after`; returns what it wrote until then.
    async fn run_killed_after(&self, args: &[&str], after: &'static str) -> String {
        let mut command = self.command(args);
        tokio::task::spawn_blocking(move || {
            let mut child = command
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{e}"));
            let mut seen = String::new();
            if let Some(stdout) = child.stdout.take() {
                for line in BufReader::new(stdout).lines() {
                    let line = line.unwrap_or_default();
                    seen.push_str(&line);
                    seen.push('\n');
                    if line.contains(after) {
                        let _ = child.kill();
                        break;
                    }
                }
            }
            let _ = child.wait();
            seen
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn placeholder(&self, n: usize) -> String {
        match self.owner.get_database_backend() {
            DbBackend::Postgres => format!("${n}"),
            _ => "?".into(),
        }
    }

    /// The rows of `org` in each registered table by key version, read as
    /// the superuser; every ciphertext's own header must name its row's
    /// version.
    async fn versions(&self, org: OrgId) -> BTreeMap<&'static str, BTreeMap<u32, u64>> {
        let mut out = BTreeMap::new();
        for t in REGISTRY {
            out.insert(t.table, self.table_versions(t, org).await);
        }
        out
    }

    async fn table_versions(&self, t: &SealedTable, org: OrgId) -> BTreeMap<u32, u64> {
        let sql = format!(
            "SELECT * FROM {} WHERE {} = {}",
            t.table,
            t.org,
            self.placeholder(1)
        );
        let rows = self
            .owner
            .query_all_raw(Statement::from_sql_and_values(
                self.owner.get_database_backend(),
                sql,
                [Value::from(org.as_uuid())],
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let mut counts = BTreeMap::new();
        for r in rows {
            let mut seen: Vec<u32> = Vec::new();
            if let VersionAt::Column(c) = t.version {
                seen.push(
                    u32::try_from(r.try_get::<i32>("", c).unwrap_or_else(|e| panic!("{e}")))
                        .unwrap_or(0),
                );
            }
            for c in t.columns {
                let value: Option<Vec<u8>> = r
                    .try_get("", c.column)
                    .unwrap_or_else(|e| panic!("{}.{}: {e}", t.table, c.column));
                if let Some(v) = value {
                    let header = carapace_phi_crypto::envelope::key_version(&v)
                        .unwrap_or_else(|| panic!("{}.{} is not a ciphertext", t.table, c.column));
                    seen.push(header);
                }
            }
            seen.dedup();
            match seen.as_slice() {
                [] => {}
                [v] => *counts.entry(*v).or_insert(0) += 1,
                _ => panic!("{}: a row under several versions {seen:?}", t.table),
            }
        }
        counts
    }

    /// Makes data key `version` of `org` look made an hour ago (past the
    /// servers' key cache).
    async fn backdate_key(&self, org: OrgId, version: i32) {
        let sql = format!(
            "UPDATE org_keys SET created_at = {} WHERE org_id = {} AND version = {}",
            self.placeholder(1),
            self.placeholder(2),
            self.placeholder(3)
        );
        let then = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
        let done = self
            .owner
            .execute_raw(Statement::from_sql_and_values(
                self.owner.get_database_backend(),
                sql,
                [
                    Value::from(then),
                    Value::from(org.as_uuid()),
                    Value::from(version),
                ],
            ))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(done.rows_affected(), 1);
    }
}

async fn post(app: &TestApp, token: &str, path: &str, body: &Json) -> Json {
    let res = send(app.http.post(app.url(path)).bearer_auth(token).json(body)).await;
    assert!(res.status().is_success(), "{path}: {}", res.status());
    res.json().await.unwrap_or(Json::Null)
}

async fn get(app: &TestApp, token: &str, path: &str) -> Json {
    let res = app.get(path, token).await;
    assert_eq!(res.status(), 200, "{path}");
    res.json().await.unwrap_or_else(|e| panic!("{e}"))
}

/// What an organization holds, made through the API: a row in every
/// sealed table.
struct Made {
    org: Org,
    patients: Vec<String>,
    appointment: String,
    task: String,
    failed_task: String,
    idempotency_key: String,
    /// A bulk export's file URL (as the export's requester downloads it).
    export_file: String,
}

const SEARCHED: &str = "MBR-ROTATE-77";
const PUBLIC: &str = "https://carapace.rotation.example";
const VOICE_ACCOUNT: &str = "ACrotation";
const VOICE_TOKEN: &str = "rotation-voice-token-0123456789";
const RECORDING: &str = "RErotation";

/// Sets the organization's telephony account, places the call of the
/// claimed task at `base` and plays the provider's `in-progress`
/// callback: the call's id.
async fn telephone(
    app: &TestApp,
    voice: &VoiceApi,
    org: &Org,
    admin: &str,
    staff: &str,
    base: &str,
) -> String {
    voice.account(VOICE_ACCOUNT, VOICE_TOKEN);
    let set = send(
        app.http
            .put(app.url("/api/v1/organization/telephony"))
            .bearer_auth(admin)
            .json(&json!({"account_sid": VOICE_ACCOUNT, "auth_token": VOICE_TOKEN, "caller_number": "+16175550100", "bot_stream_url": "wss://bot.example/media"})),
    )
    .await;
    assert_eq!(set.status(), 200);
    let placed = post(app, staff, &format!("{base}/call"), &json!({})).await;
    let call = placed["call_sid"].as_str().unwrap_or_default().to_owned();
    let path = format!("/api/v1/telephony/{}/status", org.id.as_uuid());
    let live = signed_callback(
        &app.http,
        &app.url(&path),
        &format!("{PUBLIC}{path}"),
        VOICE_TOKEN,
        &[("CallSid", call.as_str()), ("CallStatus", "in-progress")],
    )
    .await;
    assert_eq!(live.status(), 204);
    // And a voicemail left on the organization's number.
    let caller = format!("CAvm{}", uuid::Uuid::new_v4().simple());
    let inbound = format!("/api/v1/telephony/{}/voice", org.id.as_uuid());
    let answered = signed_callback(
        &app.http,
        &app.url(&inbound),
        &format!("{PUBLIC}{inbound}"),
        VOICE_TOKEN,
        &[("CallSid", caller.as_str()), ("From", "+16175550199")],
    )
    .await;
    assert_eq!(answered.status(), 200);
    let message = format!("REvm{}", uuid::Uuid::new_v4().simple());
    voice.put_recording(&message, wav(1));
    let path = format!("/api/v1/telephony/{}/voicemail", org.id.as_uuid());
    let left = signed_callback(
        &app.http,
        &app.url(&path),
        &format!("{PUBLIC}{path}"),
        VOICE_TOKEN,
        &[
            ("CallSid", caller.as_str()),
            ("RecordingSid", message.as_str()),
            ("RecordingStatus", "completed"),
            ("RecordingDuration", "1"),
        ],
    )
    .await;
    assert_eq!(left.status(), 204);
    call
}

async fn fill(app: &TestApp, voice: &VoiceApi, patients: usize) -> Made {
    let org = app.org().await;
    let admin = app.token(&org, Role::Admin);
    let ada = app.token_as(&org, Role::Clinician, "clinician-ada");
    let bob = app.token_as(&org, Role::Clinician, "clinician-bob");
    let staff = app.token_as(&org, Role::Staff, "front-desk");
    let res = send(
        app.http
            .put(app.url("/api/v1/organization/settings"))
            .bearer_auth(&admin)
            .json(&json!({"clinician_scope": "care_team", "phi_mfa": "admin", "ai_baa": true})),
    )
    .await;
    assert_eq!(res.status(), 200);
    let mut ids = Vec::new();
    for i in 0..patients {
        let mut body = crate::support::patient(&format!("Rotated{i}"));
        if i == 0 {
            body["member_id"] = json!(SEARCHED);
            body["sex"] = json!("female");
        }
        let made = post(app, &ada, "/api/v1/patients", &body).await;
        ids.push(made["id"].as_str().unwrap_or_default().to_owned());
    }
    let p = ids[0].clone();
    // An idempotent create: its answer is stored sealed.
    let idempotency_key = format!("\"{}\"", uuid::Uuid::new_v4());
    let first = send(
        app.http
            .post(app.url("/api/v1/patients"))
            .bearer_auth(&ada)
            .header("idempotency-key", &idempotency_key)
            .json(&crate::support::patient("Idempotent")),
    )
    .await;
    assert_eq!(first.status(), 201);
    let start = (time::OffsetDateTime::now_utc() + time::Duration::days(3))
        .replace_time(time::Time::from_hms(10, 0, 0).unwrap_or_else(|e| panic!("{e}")));
    let appointment = post(
        app,
        &ada,
        "/api/v1/appointments",
        &json!({
            "patient_id": p, "practitioner": "clinician-ada",
            "start": start.format(&Rfc3339).unwrap_or_default(),
            "end": (start + time::Duration::minutes(30)).format(&Rfc3339).unwrap_or_default(),
            "time_zone": "Europe/Berlin", "reason": "Rotating tremor follow-up",
        }),
    )
    .await["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    post(
        app,
        &ada,
        &format!("/api/v1/patients/{p}/medications"),
        &json!({"drug_name": "Rotaprazole", "dose": "10 mg", "schedule": "once daily",
                "started_on": "2026-01-01", "stopped_on": "2026-01-20"}),
    )
    .await;
    post(
        app,
        &ada,
        &format!("/api/v1/patients/{p}/side-effects"),
        &json!({"symptom": "Spinning headache", "severity": "moderate", "onset_on": "2026-01-03"}),
    )
    .await;
    post(
        app,
        &bob,
        &format!("/api/v1/patients/{p}/break-glass"),
        &json!({"reason": "unconscious patient in the emergency room"}),
    )
    .await;
    let key = post(
        app,
        &admin,
        "/api/v1/service-keys",
        &json!({"name": "voice bot", "roles": ["service"]}),
    )
    .await;
    let bot = key["key"].as_str().unwrap_or_default().to_owned();
    let mut tasks = Vec::new();
    for outcome in ["completed", "failed"] {
        let task = post(app, &staff, "/api/v1/verification-tasks", &json!({"patient_id": p, "payer_name": "Acme Health", "payer_phone": "+1 800 555 0199", "plan": "Gold PPO", "procedure_codes": ["99213", "J3490"]})).await;
        let base = format!(
            "/api/v1/verification-tasks/{}",
            task["id"].as_str().unwrap_or_default()
        );
        post(app, &bot, &format!("{base}/claim"), &json!({})).await;
        let call = if outcome == "completed" {
            // Carapace places this one: the provider's callback puts the
            // task on the phone, and its recording is stored sealed.
            Some(telephone(app, voice, &org, &admin, &staff, &base).await)
        } else {
            post(
                app,
                &bot,
                &format!("{base}/progress"),
                &json!({"status": "calling"}),
            )
            .await;
            None
        };
        for (seq, text) in ["Agent: Acme Health. ", "Agent: approved, ref PA-77."]
            .iter()
            .enumerate()
        {
            post(
                app,
                &bot,
                &format!("{base}/transcript"),
                &json!({"seq": seq, "text": text}),
            )
            .await;
        }
        let end = if outcome == "completed" {
            json!({"status": "completed", "reference_number": "PA-77"})
        } else {
            json!({"status": "failed", "reason": "the payer hung up"})
        };
        post(app, &bot, &format!("{base}/progress"), &end).await;
        if let Some(call) = call {
            voice.put_recording(RECORDING, wav(2));
            let path = format!("/api/v1/telephony/{}/recording", org.id.as_uuid());
            let stored = signed_callback(
                &app.http,
                &app.url(&path),
                &format!("{PUBLIC}{path}"),
                VOICE_TOKEN,
                &[
                    ("CallSid", call.as_str()),
                    ("RecordingSid", RECORDING),
                    ("RecordingStatus", "completed"),
                    ("RecordingDuration", "2"),
                ],
            )
            .await;
            assert_eq!(stored.status(), 204);
        }
        tasks.push(task["id"].as_str().unwrap_or_default().to_owned());
    }
    // The supervisor's number, sealed as an organization setting.
    let supervisor = send(
        app.http
            .put(app.url("/api/v1/organization/verification-settings"))
            .bearer_auth(&admin)
            .json(&json!({"supervisor_phone": "+1 617 555 0123"})),
    )
    .await;
    assert_eq!(supervisor.status(), 200);
    // Organization settings (ai_baa) are remembered for up to a second.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let answer = post(
        app,
        &ada,
        "/api/v1/assistant/messages",
        &json!({"message": "hello rotation"}),
    )
    .await;
    assert_eq!(
        answer["answer"],
        "(local assistant) You wrote: hello rotation"
    );
    // A bulk export: its NDJSON files are sealed too.
    let kick = send(
        app.http
            .get(app.url("/fhir/R4/Patient/$export?_type=Patient"))
            .bearer_auth(&admin)
            .header("prefer", "respond-async"),
    )
    .await;
    assert_eq!(kick.status(), 202);
    let export = kick
        .headers()
        .get("content-location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .replacen(PUBLIC, &app.url(""), 1);
    let mut manifest = serde_json::Value::Null;
    for _ in 0..200 {
        let polled = send(app.http.get(&export).bearer_auth(&admin)).await;
        if polled.status() == 200 {
            manifest = polled.json().await.unwrap_or_default();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Links are built on the public URL; this test reaches the app directly.
    let export_file = manifest["output"][0]["url"]
        .as_str()
        .unwrap_or_default()
        .replacen(PUBLIC, &app.url(""), 1);
    assert!(!export_file.is_empty(), "{manifest}");
    Made {
        org,
        patients: ids,
        appointment,
        task: tasks[0].clone(),
        failed_task: tasks[1].clone(),
        idempotency_key,
        export_file,
    }
}

/// Everything `made` holds reads back through the API, and search by both
/// blind-indexed fields finds its first patient.
async fn reads_back(app: &TestApp, made: &Made) {
    let ada = app.token_as(&made.org, Role::Clinician, "clinician-ada");
    let staff = app.token_as(&made.org, Role::Staff, "front-desk");
    for (i, id) in made.patients.iter().enumerate() {
        let p = get(app, &ada, &format!("/api/v1/patients/{id}")).await;
        assert_eq!(p["given_name"], format!("Rotated{i}"));
        assert_eq!(p["email"], "jane@example.org");
    }
    let first = get(app, &ada, &format!("/api/v1/patients/{}", made.patients[0])).await;
    assert_eq!(
        (first["member_id"].as_str(), first["sex"].as_str()),
        (Some(SEARCHED), Some("female"))
    );
    let by_member = get(app, &ada, &format!("/api/v1/patients?member_id={SEARCHED}")).await;
    let found: Vec<&str> = by_member["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        found,
        vec![made.patients[0].as_str()],
        "search by member id: {by_member}"
    );
    let by_name = get(
        app,
        &ada,
        "/api/v1/patients?family_name=ROE&birth_date=1980-02-03&limit=100",
    )
    .await;
    let found: Vec<&str> = by_name["items"]
        .as_array()
        .map(|a| a.iter().filter_map(|p| p["id"].as_str()).collect())
        .unwrap_or_default();
    for id in &made.patients {
        assert!(
            found.contains(&id.as_str()),
            "search by family name and birth date finds {id}: {by_name}"
        );
    }
    let appointment = get(
        app,
        &ada,
        &format!("/api/v1/appointments/{}", made.appointment),
    )
    .await;
    assert_eq!(appointment["reason"], "Rotating tremor follow-up");
    let history = get(
        app,
        &ada,
        &format!("/api/v1/patients/{}/medications", made.patients[0]),
    )
    .await
    .to_string();
    for marker in ["Rotaprazole", "2026-01-20", "Spinning headache", "moderate"] {
        assert!(history.contains(marker), "{marker} in {history}");
    }
    let task = get(
        app,
        &staff,
        &format!("/api/v1/verification-tasks/{}", made.task),
    )
    .await;
    assert_eq!(
        (task["plan"].as_str(), task["reference_number"].as_str()),
        (Some("Gold PPO"), Some("PA-77"))
    );
    let failed = get(
        app,
        &staff,
        &format!("/api/v1/verification-tasks/{}", made.failed_task),
    )
    .await;
    assert_eq!(failed["status"], "failed");
    for task in [&made.task, &made.failed_task] {
        let transcript = get(
            app,
            &staff,
            &format!("/api/v1/verification-tasks/{task}/transcript"),
        )
        .await;
        assert_eq!(
            transcript["text"],
            "Agent: Acme Health. Agent: approved, ref PA-77."
        );
    }
    let admin = app.token(&made.org, Role::Admin);
    let settings = get(app, &admin, "/api/v1/organization/verification-settings").await;
    assert_eq!(settings["supervisor_phone"], "+1 617 555 0123");
    let account = get(app, &admin, "/api/v1/organization/telephony").await;
    assert_eq!(account["account_sid"], VOICE_ACCOUNT);
    let played = app
        .get(
            &format!(
                "/api/v1/verification-tasks/{}/recordings/{RECORDING}",
                made.task
            ),
            &staff,
        )
        .await;
    assert_eq!(played.status(), 200);
    assert_eq!(played.bytes().await.unwrap_or_default().to_vec(), wav(2));
    let ndjson = send(app.http.get(&made.export_file).bearer_auth(&admin)).await;
    assert_eq!(ndjson.status(), 200);
    assert!(
        ndjson
            .text()
            .await
            .unwrap_or_default()
            .contains("\"resourceType\":\"Patient\""),
        "the export's file opens"
    );
    let voicemails = get(app, &staff, "/api/v1/voicemails").await;
    assert_eq!(voicemails[0]["caller"], "+16175550199");
    let id = voicemails[0]["id"].as_str().unwrap_or_default();
    let heard = app
        .get(&format!("/api/v1/voicemails/{id}/audio"), &staff)
        .await;
    assert_eq!(heard.bytes().await.unwrap_or_default().to_vec(), wav(1));
    let turns = get(app, &ada, "/api/v1/assistant/messages").await;
    let texts: Vec<&str> = turns
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["text"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(
        texts,
        vec![
            "hello rotation",
            "(local assistant) You wrote: hello rotation"
        ]
    );
    let again = send(
        app.http
            .post(app.url("/api/v1/patients"))
            .bearer_auth(&ada)
            .header("idempotency-key", &made.idempotency_key)
            .json(&crate::support::patient("Idempotent")),
    )
    .await;
    assert_eq!(again.status(), 201);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true"),
        "the stored answer opens"
    );
}

/// Every registered table of `versions` holds rows only under `version`,
/// and at least one (`made` has a row in each).
fn all_under(versions: &BTreeMap<&'static str, BTreeMap<u32, u64>>, version: u32) {
    for (table, rows) in versions {
        assert_eq!(
            rows.keys().copied().collect::<Vec<_>>(),
            vec![version],
            "{table}: {rows:?}"
        );
    }
}

async fn rotate_everything(app: &TestApp, voice: &VoiceApi, backend: Backend, test: &str) {
    let made = fill(app, voice, 12).await;
    let other = fill(app, voice, 2).await;
    let env = Env::of(app, backend, test).await;
    let slug = made.org.slug.clone();
    all_under(&env.versions(made.org.id).await, 1);
    reads_back(app, &made).await;

    // Nothing to retire yet: version 1 is current.
    let (code, said) = env
        .run(&["keys", "retire", "--org", &slug, "--version", "1"])
        .await;
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("current data key"), "{said}");

    // A rotation killed after its first progress line...
    let first = env
        .run_killed_after(
            &["keys", "rotate", "--org", &slug, "--batch", "1"],
            " re-encrypted",
        )
        .await;
    assert!(
        first.contains(&format!("{slug}: data key version 2")),
        "{first}"
    );
    let patients = made.patients.len() + 1;
    assert!(
        first.contains(&format!("{slug}: patients: 1 of {patients} re-encrypted")),
        "{first}"
    );
    let halfway = env.versions(made.org.id).await;
    let left: u64 = halfway.values().filter_map(|r| r.get(&1)).sum();
    if left == 0 {
        eprintln!("note: the rotation finished before it was killed");
    }
    // ...leaves everything readable and findable, whatever it moved.
    reads_back(app, &made).await;
    let (code, said) = env.run(&["keys", "status", "--org", &slug]).await;
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("current v2"), "{said}");

    // Resumed: no new version, every table done.
    let (code, said) = env
        .run(&["keys", "rotate", "--org", &slug, "--resume", "--batch", "3"])
        .await;
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!(
            "{slug}: resuming: rows move to data key version 2"
        )),
        "{said}"
    );
    for t in REGISTRY {
        assert!(
            said.contains(&format!("{slug}: {}: ", t.table)),
            "{} in {said}",
            t.table
        );
    }
    assert!(
        said.contains(&format!(
            "{slug}: done ({left} rows re-encrypted under version 2)"
        )),
        "{said}"
    );
    let after = env.versions(made.org.id).await;
    all_under(&after, 2);
    // The other organization kept its own key.
    all_under(&env.versions(other.org.id).await, 1);
    reads_back(app, &made).await;
    reads_back(app, &other).await;

    let (code, said) = env.run(&["keys", "status", "--org", &slug]).await;
    assert_eq!(code, Some(0), "{said}");
    let patients_line = said
        .lines()
        .find(|l| l.starts_with("patients "))
        .unwrap_or_default();
    assert!(
        patients_line.ends_with(&format!("v1: 0  v2: {patients}")),
        "{said}"
    );
    for t in REGISTRY {
        let n = after[t.table].get(&2).copied().unwrap_or(0);
        assert!(
            said.lines().any(|l| l.starts_with(&format!("{} ", t.table))
                && l.ends_with(&format!("v1: 0  v2: {n}"))),
            "{}: {said}",
            t.table
        );
    }
    assert!(said.contains("unused versions: v1 (retire with"), "{said}");

    // Version 2 is too new to retire version 1: a server may still seal
    // under it. And indeed this server does (it has not looked its key up
    // again): a patient made now is under version 1.
    let (code, said) = env
        .run(&["keys", "retire", "--org", &slug, "--version", "1"])
        .await;
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("too new"), "{said}");
    env.backdate_key(made.org.id, 2).await;
    let ada = app.token_as(&made.org, Role::Clinician, "clinician-ada");
    let late = post(
        app,
        &ada,
        "/api/v1/patients",
        &crate::support::patient("Late"),
    )
    .await;
    assert_eq!(
        env.versions(made.org.id).await["patients"].get(&1),
        Some(&1)
    );
    let (code, said) = env
        .run(&["keys", "retire", "--org", &slug, "--version", "1"])
        .await;
    assert_eq!(code, Some(1), "{said}");
    assert!(
        said.contains("refused: 1 rows of patients are still under version 1"),
        "{said}"
    );
    let (code, said) = env
        .run(&["keys", "rotate", "--org", &slug, "--resume"])
        .await;
    assert_eq!(code, Some(0), "{said}");
    assert!(
        said.contains(&format!("{slug}: patients: 1 of 1 re-encrypted")),
        "{said}"
    );
    let (code, said) = env
        .run(&["keys", "retire", "--org", &slug, "--version", "1"])
        .await;
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("data key version 1 retired"), "{said}");
    let (code, said) = env
        .run(&["keys", "retire", "--org", &slug, "--version", "1"])
        .await;
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("no data key version 1"), "{said}");

    // Gone for good, and nothing needed it.
    let (code, said) = env.run(&["keys", "status", "--org", &slug]).await;
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("data key versions v2; current v2"), "{said}");
    assert!(said.contains("unused versions: none"), "{said}");
    reads_back(app, &made).await;
    let late = get(
        app,
        &ada,
        &format!(
            "/api/v1/patients/{}",
            late["id"].as_str().unwrap_or_default()
        ),
    )
    .await;
    assert_eq!(late["given_name"], "Late");
    let (code, said) = env.run(&["keys", "status", "--org", &other.org.slug]).await;
    assert_eq!(code, Some(0), "{said}");
    assert!(said.contains("data key versions v1; current v1"), "{said}");
    reads_back(app, &other).await;

    // Each step is in the organization's audit trail.
    let compliance = app.token(&made.org, Role::Compliance);
    let trail = get(app, &compliance, "/api/v1/audit-events?limit=500")
        .await
        .to_string();
    for action in [
        "keys.rotate_data_key",
        "keys.reencrypt",
        "keys.retire_data_key",
    ] {
        assert!(trail.contains(action), "{action} in the trail");
    }
    // An unknown organization is a usage error.
    let (code, _) = env.run(&["keys", "status", "--org", "no-such-org"]).await;
    assert_eq!(code, Some(2));
}

async fn spawn(backend: Backend, test: &str) -> Option<(TestApp, VoiceApi)> {
    let voice = VoiceApi::start();
    let base = voice.base.clone();
    let app = spawn_app_with(backend, test, move |s| {
        s.ai_provider = "local".into();
        s.ai_baa_signed = true;
        s.voice_url = Some(base);
        s.voice_allow_loopback = true;
        s.public_url = Some(PUBLIC.to_owned());
    })
    .await?;
    Some((app, voice))
}

#[tokio::test]
async fn rotation_reencrypts_every_sealed_table_resumes_and_retires_sqlite() {
    let test = "rotation_reencrypts_every_sealed_table_sqlite";
    if let Some((app, voice)) = spawn(Backend::Sqlite, test).await {
        rotate_everything(&app, &voice, Backend::Sqlite, test).await;
        app.stop().await;
    }
}

#[tokio::test]
async fn rotation_reencrypts_every_sealed_table_resumes_and_retires_postgres() {
    let test = "rotation_reencrypts_every_sealed_table_postgres";
    if let Some((app, voice)) = spawn(Backend::Postgres, test).await {
        rotate_everything(&app, &voice, Backend::Postgres, test).await;
        app.stop().await;
    }
}
