//! `spawn_app`: the real server on port 0 against a fresh database.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use carapace_audit::{SecurityEvent, SecurityEventKind, SecurityEventSink};
use std::time::Duration;

use carapace_auth::Role;
use carapace_infra::dev_token::DevTokens;
use carapace_infra::{Database, SeaOrganizations};
use carapace_server::server::{self, Running};
use carapace_server::settings::Settings;
use carapace_tenancy::{
    NewOrganization, OrgId, OrgName, OrgSlug, OrganizationRepository as _, SubjectId,
};
use secrecy::{ExposeSecret as _, SecretString};
use serde_json::{Value, json};

pub const DEV_SECRET: &str = "test-dev-token-secret-0123456789abcdef";

/// Which database the app runs on.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    /// Security events the app emitted.
    pub events: Arc<CapturedEvents>,
    pub base: String,
    /// Where the app keeps local state (outbox, dev keys).
    pub data_dir: std::path::PathBuf,
    pub http: reqwest::Client,
    pub db: Database,
    tokens: DevTokens,
    running: Option<Running>,
    _dir: Option<tempfile::TempDir>,
}

/// A security-event sink that keeps what it is given, then records it in
/// the app's real (persisted) sink.
pub struct CapturedEvents(Mutex<Vec<SecurityEvent>>, Arc<dyn SecurityEventSink>);

impl CapturedEvents {
    /// The events of `kind` so far.
    pub fn of(&self, kind: SecurityEventKind) -> Vec<SecurityEvent> {
        self.0
            .lock()
            .map(|e| e.iter().filter(|e| e.kind == kind).cloned().collect())
            .unwrap_or_default()
    }
}

impl SecurityEventSink for CapturedEvents {
    fn emit(&self, event: SecurityEvent) -> carapace_audit::AuditFuture<'_> {
        if let Ok(mut e) = self.0.lock() {
            e.push(event.clone());
        }
        self.1.emit(event)
    }
}

/// An organization.
#[derive(Clone, Debug)]
pub struct Org {
    pub id: OrgId,
    pub slug: String,
}

pub fn settings_with(url: String) -> Settings {
    Settings {
        database_url: SecretString::from(url),
        dev_token_secret: Some(SecretString::from(DEV_SECRET)),
        cursor_secret: Some(SecretString::from("test-cursor-secret-0123456789abcdef")),
        // Tests log in far more often than people do; the limits tests set
        // their own quotas.
        rate_limit_auth_per_minute: 60_000,
        rate_limit_auth_burst: 1000,
        ..Settings::default()
    }
}

/// Starts the app on a fresh PostgreSQL database of its own (`migrated` or
/// not), as the application role; also gives the database (its owner URL)
/// and the settings. `None` (after a SKIP line) without PostgreSQL.
pub async fn spawn_on_fresh_postgres(
    test: &str,
    migrated: bool,
) -> Option<(TestApp, carapace_testkit::PgTestDb, Settings)> {
    let pg = carapace_testkit::postgres_fresh(test, migrated).await?;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let settings = Settings {
        database_url: pg.app_url.clone().into(),
        dev_token_secret: Some(DEV_SECRET.to_owned().into()),
        data_dir: dir.path().to_path_buf(),
        ..Settings::default()
    };
    let app = spawn_with(settings.clone(), Some(dir)).await;
    Some((app, pg, settings))
}

/// Starts the app on `backend`; `None` (after a SKIP line) when that
/// backend's service is not configured.
pub async fn spawn_app(backend: Backend, test: &str) -> Option<TestApp> {
    spawn_app_with(backend, test, |_| {}).await
}

/// Like [`spawn_app`], with settings adjusted by `configure`.
pub async fn spawn_app_with(
    backend: Backend,
    test: &str,
    configure: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let mut settings = match backend {
        Backend::Sqlite => settings_with(format!("sqlite://{}/carapace.db", dir.path().display())),
        Backend::Postgres => settings_with(carapace_testkit::postgres(test).await?.app_url.clone()),
    };
    settings.data_dir = dir.path().join("data");
    configure(&mut settings);
    Some(spawn_with(settings, Some(dir)).await)
}

/// Everything every test's server logged (debug level and up), as JSON
/// lines: the whole run's logs, for the no-PHI-in-logs check.
pub fn captured_logs() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();
    LOGS.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let sink = buffer.clone();
        // The server's own JSON subscriber (request id on each line,
        // redaction), writing here.
        let subscriber = carapace_server::logging::json_subscriber(
            tracing_subscriber::EnvFilter::new("debug"),
            move || LogWriter(sink.clone()),
            carapace_server::logging::Redaction::new(""),
            None,
        );
        let _ = tracing::subscriber::set_global_default(subscriber);
        // Panics reach the logs as they do in the server, and the test
        // harness still prints its own failures.
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            carapace_server::logging::log_panic(info);
            default(info);
        }));
        buffer
    })
}

/// The whole run's logs so far, as text.
pub fn captured_log_text() -> String {
    String::from_utf8_lossy(
        &captured_logs()
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default(),
    )
    .into_owned()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Starts the app with explicit settings.
pub async fn spawn_with(settings: Settings, dir: Option<tempfile::TempDir>) -> TestApp {
    captured_logs();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut state = server::prepare(&settings)
        .await
        .unwrap_or_else(|e| panic!("prepare: {e:#}"));
    let events = Arc::new(CapturedEvents(Mutex::default(), state.events.clone()));
    state.events = events.clone();
    let db = state.db.clone();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let running = server::start(state, &settings, listener).unwrap_or_else(|e| panic!("{e:#}"));
    let tokens = DevTokens::new(&SecretString::from(DEV_SECRET)).unwrap_or_else(|e| panic!("{e}"));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    TestApp {
        events,
        base: format!("http://{}", running.addr),
        data_dir: settings.data_dir.clone(),
        http,
        db,
        tokens,
        running: Some(running),
        _dir: dir,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a new organization that chose MFA for PHI through the admin
    /// role only (most tests are about something else than that rule; the
    /// default, MFA for every staff session, is [`Self::org_with_defaults`]'s).
    pub async fn org(&self) -> Org {
        let org = self.org_with_defaults().await;
        let settings = carapace_tenancy::OrgSettings {
            phi_mfa: carapace_tenancy::PhiMfa::Admin,
            ..carapace_tenancy::OrgSettings::default()
        };
        assert!(
            SeaOrganizations::new(self.db.clone())
                .update_settings(org.id, settings)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
        );
        org
    }

    /// Creates a new organization with every setting at its default.
    pub async fn org_with_defaults(&self) -> Org {
        let slug = format!("org-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let org = SeaOrganizations::new(self.db.clone())
            .create(NewOrganization {
                slug: OrgSlug::parse(&slug).unwrap_or_else(|e| panic!("{e}")),
                name: OrgName::parse("Test Clinic").unwrap_or_else(|e| panic!("{e}")),
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        Org { id: org.id, slug }
    }

    /// A dev token for `org` with `role`, from an MFA session.
    pub fn token(&self, org: &Org, role: Role) -> String {
        self.mint(org, role, true)
    }

    /// A dev token for `org` with `role`, without MFA.
    pub fn token_without_mfa(&self, org: &Org, role: Role) -> String {
        self.mint(org, role, false)
    }

    /// A dev token (with MFA) for `subject` in `org` with `role`.
    pub fn token_as(&self, org: &Org, role: Role, subject: &str) -> String {
        self.mint_as(org, role, true, subject)
    }

    fn mint(&self, org: &Org, role: Role, mfa: bool) -> String {
        self.mint_as(org, role, mfa, "test-user")
    }

    fn mint_as(&self, org: &Org, role: Role, mfa: bool, subject: &str) -> String {
        let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
        let subject = SubjectId::parse(subject).unwrap_or_else(|e| panic!("{e}"));
        self.tokens
            .mint_session(
                org.id,
                &subject,
                &[role],
                mfa,
                now,
                Duration::from_secs(600),
            )
            .unwrap_or_else(|e| panic!("{e}"))
            .expose_secret()
            .to_owned()
    }

    /// POSTs a JSON patient as `token`.
    pub async fn create_patient(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(self.url("/api/v1/patients"))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Creates a patient that must succeed and returns its id.
    pub async fn new_patient(&self, token: &str, given: &str) -> String {
        let res = self.create_patient(token, &patient(given)).await;
        assert_eq!(res.status(), 201);
        let body: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
        body["id"].as_str().unwrap_or_default().to_owned()
    }

    /// GET without credentials.
    pub async fn get_public(&self, path: &str) -> reqwest::Response {
        send(self.http.get(self.url(path))).await
    }

    /// PATCH a JSON body as `token`.
    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> reqwest::Response {
        send(
            self.http
                .patch(self.url(path))
                .bearer_auth(token)
                .json(body),
        )
        .await
    }

    /// DELETE as `token`.
    pub async fn delete(&self, path: &str, token: &str) -> reqwest::Response {
        send(self.http.delete(self.url(path)).bearer_auth(token)).await
    }

    pub async fn get(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every patient `token` can list (all pages).
    pub async fn all_patients(&self, token: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut path = "/api/v1/patients?limit=100".to_owned();
        loop {
            let res = self.get(&path, token).await;
            assert_eq!(res.status(), 200);
            let page: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => path = format!("/api/v1/patients?limit=100&cursor={c}"),
                None => return items,
            }
        }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

/// Sends a request; transport errors fail the test.
pub async fn send(req: reqwest::RequestBuilder) -> reqwest::Response {
    req.send().await.unwrap_or_else(|e| panic!("{e}"))
}

/// A valid patient body.
pub fn patient(given: &str) -> Value {
    json!({
        "given_name": given,
        "family_name": "Roe",
        "birth_date": "1980-02-03",
        "member_id": "M-100",
        "phone": "+1 555 010 0100",
        "email": "jane@example.org"
    })
}

/// Asserts a problem+json response with `status` and returns its body.
pub async fn problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/problem+json"),
        "content type {content_type}"
    );
    let request_id = res
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(!request_id.is_empty(), "X-Request-Id present");
    let body: Value = res.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["status"], status);
    assert_eq!(
        body["request_id"],
        request_id.as_str(),
        "body carries the request id"
    );
    assert!(body["type"].is_string() && body["title"].is_string());
    body
}

/// Runs `f` on SQLite, then on PostgreSQL when available.
#[macro_export]
macro_rules! on_both_backends {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;

            #[tokio::test]
            async fn sqlite() {
                let app = spawn_app(Backend::Sqlite, concat!(stringify!($name), "::sqlite")).await;
                if let Some(app) = app {
                    ($body)(&app).await;
                    app.stop().await;
                }
            }

            #[tokio::test]
            async fn postgres() {
                let app =
                    spawn_app(Backend::Postgres, concat!(stringify!($name), "::postgres")).await;
                if let Some(app) = app {
                    ($body)(&app).await;
                    app.stop().await;
                }
            }
        }
    };
}
