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

mod data;
mod registry;
mod rotate;

use data::{fill, reads_back};
use rotate::rotate_everything;

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
