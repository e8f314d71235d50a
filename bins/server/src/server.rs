//! Start-up and shutdown: connect, migrate where allowed, check the
//! database posture, wire the state, serve until SIGTERM/SIGINT.

mod jobs;
mod secrets;

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::middleware::{Compress, from_fn};
use actix_web::{App, HttpServer, web};
use anyhow::{Context as _, bail};
use carapace_auth::local::admin::UserAdmin;
use carapace_auth::local::{LocalAuth, PasswordReset};
use carapace_infra::accounts::{SeaAccounts, SeaResets, SeaSessions};
use carapace_infra::audit::SeaAuditLog;
use carapace_infra::keys::KeyRing;
use carapace_infra::kill_switch::SeaKillSwitch;
use carapace_infra::oidc::OidcVerifier;
use carapace_infra::outbound::SafeHttp;
use carapace_infra::rate_limit::Limiter;
use carapace_infra::service_keys::SeaServiceKeys;
use carapace_infra::tokens::Verifiers;
use carapace_infra::{
    Backend, Database, SeaAppointments, SeaCalendarFeeds, SeaConsultations, SeaMedications,
    SeaOrganizations, SeaPatients, SeaResearch, SeaVerifications,
};
use carapace_tenancy::cursor::CursorKey;
use secrecy::ExposeSecret as _;

pub use jobs::{
    Job, Reminders, Stop, alert_deliverer, audit_chainer, remind_unless_suspended,
    reminder_deliverer,
};
pub use secrets::{
    audit_signing_key, dev_tokens, kms_sealer, local_tokens, sealer, sealer_from_file,
};

use self::jobs::Jobs;
use self::secrets::mailer;
use crate::http::headers::{self, SecurityHeaders};
use crate::http::kill_switch::{self, KillSwitchWatch};
use crate::http::witness::WitnessGate;
use crate::http::{extract, request_id, wait_budget};
use crate::routes;
use crate::settings::{AsConfig, Config, Profile};
use crate::state::AppState;

/// Connects to the database for commands: on SQLite migrations are applied
/// (embedded, single-user); on PostgreSQL only `migrate` changes the schema.
pub async fn connect(settings: &Config) -> anyhow::Result<Database> {
    let db = Database::connect(&settings.database.db())
        .await
        .context("connecting to CARAPACE_DATABASE_URL")?;
    if db.backend() == Backend::Sqlite {
        db.migrate()
            .await
            .context("applying migrations to the SQLite database")?;
    }
    Ok(db)
}

/// Applies migrations as the owner (`CARAPACE_DATABASE_OWNER_URL`, or the
/// database URL on SQLite).
pub async fn migrate(settings: &Config) -> anyhow::Result<()> {
    if settings.database.backend() == Some(Backend::Postgres)
        && settings.database.owner_url.is_none()
    {
        bail!(
            "CARAPACE_DATABASE_OWNER_URL is not set: migrations run as the schema owner, not as the server's role"
        );
    }
    let db = Database::connect(&settings.database.owner_db())
        .await
        .context("connecting as the schema owner")?;
    db.migrate().await.context("applying migrations")?;
    db.close().await;
    Ok(())
}

/// Builds the application state: database (migrated if allowed, posture
/// checked), token verifier and cursor key. Fails closed on any problem.
pub async fn prepare(settings: &impl AsConfig) -> anyhow::Result<AppState> {
    let settings = settings.as_config();
    let settings: &Config = &settings;
    carapace_infra::jwt_crypto::install();
    if settings.database.backend() == Some(Backend::Postgres)
        && settings.database.owner_url.is_some()
    {
        migrate(settings).await?;
    }
    let db = connect(settings).await?;
    let problems = db
        .posture_problems()
        .await
        .context("checking the database role's posture")?;
    if !problems.is_empty() {
        let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
        bail!(
            "refusing to serve with an unsafe database posture:\n{}",
            lines.join("\n")
        );
    }
    let pending = db
        .pending_migrations()
        .await
        .context("reading migration state")?;
    if !pending.is_empty() {
        tracing::warn!(
            pending = pending.len(),
            "database migrations are pending; /health/ready reports 503 until `carapace migrate` runs"
        );
    }
    let oidc = match settings.oidc.settings() {
        Some(oidc) => {
            let verifier = OidcVerifier::new(oidc, SeaOrganizations::new(db.clone()))
                .context("building the OIDC HTTP client")?;
            verifier.warm().await;
            Some(verifier)
        }
        None => None,
    };
    // The key-encryption key: wraps data keys and seals MFA seeds.
    let kek = sealer(settings)?;
    let keys = Arc::new(KeyRing::new(db.clone(), kek.clone()));
    let local_tokens = local_tokens(settings)?;
    let local = local_tokens.clone().map(|tokens| LocalAuth {
        accounts: SeaAccounts::new(db.clone()),
        sessions: SeaSessions::new(db.clone()),
        tokens,
        limits: settings.auth.session_limits(),
        sealer: kek.clone(),
        events: Arc::new(SeaAuditLog::new(db.clone())),
    });
    let reset = match &local {
        Some(_) => Some(PasswordReset {
            accounts: SeaAccounts::new(db.clone()),
            resets: SeaResets::new(db.clone()),
            mailer: mailer(settings)?,
            events: Arc::new(SeaAuditLog::new(db.clone())),
        }),
        None => None,
    };
    let user_admin = match &local {
        Some(_) => Some(UserAdmin {
            accounts: SeaAccounts::new(db.clone()),
            invitations: PasswordReset {
                accounts: SeaAccounts::new(db.clone()),
                resets: SeaResets::new(db.clone()),
                mailer: mailer(settings)?,
                events: Arc::new(SeaAuditLog::new(db.clone())),
            },
        }),
        None => None,
    };
    let authenticator = Verifiers::new(dev_tokens(settings)?, local_tokens, oidc)
        .with_service_keys(SeaServiceKeys::new(db.clone()))
        .with_session_check(SeaSessions::new(db.clone()))
        .with_subject_check(SeaAccounts::new(db.clone()));
    let cursor_key = match &settings.auth.cursor_secret {
        Some(secret) => CursorKey::from_secret(secret.expose_secret().as_bytes()),
        None => CursorKey::random(),
    };
    let limiter = Arc::new(
        Limiter::connect(settings.limits.redis_url.as_ref(), settings.limits.quotas())
            .await
            .context("CARAPACE_REDIS_URL: Redis did not answer")?,
    );
    let kill_switch = Arc::new(KillSwitchWatch::load(SeaKillSwitch::new(db.clone())).await);
    let witness = match settings.audit.witness.url {
        Some(_) => Some(Arc::new(
            WitnessGate::load(
                db.clone(),
                Duration::from_secs(settings.audit.witness.max_backlog_secs),
            )
            .await,
        )),
        None => None,
    };
    let operator_org = match &settings.auth.operator_org {
        Some(slug) => Some(
            carapace_tenancy::OrgSlug::parse(slug)
                .map_err(|e| anyhow::anyhow!("CARAPACE_OPERATOR_ORG: {e}"))?,
        ),
        None => None,
    };
    Ok(AppState {
        metrics: Arc::new(crate::metrics::Metrics::new()),
        metrics_token: settings.telemetry.metrics_token.as_ref().map(|t| {
            use sha2::Digest as _;
            sha2::Sha256::digest(t.expose_secret().as_bytes()).into()
        }),
        slow_request: Duration::from_millis(settings.telemetry.slow_request_ms),
        kill_switch,
        witness,
        operator_org,
        patients: SeaPatients::new(db.clone(), keys.clone()),
        appointments: SeaAppointments::new(db.clone(), keys.clone()),
        medications: SeaMedications::new(db.clone(), keys.clone()),
        consultations: SeaConsultations::new(db.clone()),
        verifications: SeaVerifications::new(db.clone(), keys.clone()),
        calls: carapace_infra::calls::SeaCalls::new(db.clone(), keys.clone()),
        voicemails: carapace_infra::voicemail::SeaVoicemails::new(db.clone(), keys.clone()),
        public_url: settings
            .voice
            .public_url
            .as_deref()
            .map(|u| u.trim_end_matches('/').to_owned()),
        oidc_issuer: settings.oidc.issuer.clone(),
        exports: carapace_infra::exports::SeaExports::new(db.clone(), keys.clone()),
        export_ttl: time::Duration::seconds(
            i64::try_from(settings.limits.export_ttl_secs).unwrap_or(3600),
        ),
        voice: settings
            .voice
            .provider(settings.profile)
            .map(|(api, public_url)| crate::state::Voice { api, public_url }),
        ai: match settings.assistant.provider.as_str() {
            "local" => Some(carapace_infra::assistant::Ai::Local(
                carapace_infra::assistant::LocalAi,
            )),
            _ => settings
                .assistant
                .openai(settings.profile)
                .map(|(openai, policy)| {
                    carapace_infra::assistant::Ai::OpenAi(
                        carapace_infra::assistant::OpenAiChat::new(SafeHttp::new(policy), openai),
                    )
                }),
        },
        speech: match settings.assistant.speech_provider.as_str() {
            "local" => Some(carapace_infra::speech::Speech::Local(
                carapace_infra::speech::LocalSpeech::default(),
            )),
            _ => settings
                .assistant
                .openai_speech(settings.profile)
                .map(|(openai, policy)| {
                    carapace_infra::speech::Speech::OpenAi(
                        carapace_infra::speech::OpenAiSpeech::new(SafeHttp::new(policy), openai),
                    )
                }),
        },
        ai_baa_signed: settings.assistant.baa_signed,
        assistant: carapace_infra::assistant::SeaAssistant::new(db.clone(), keys.clone()),
        research: SeaResearch::new(
            db.clone(),
            SeaPatients::new(db.clone(), keys.clone()),
            SeaMedications::new(db.clone(), keys.clone()),
        ),
        idempotency: carapace_infra::idempotency::SeaIdempotency::new(db.clone(), keys.clone()),
        calendar: SeaCalendarFeeds::new(
            db.clone(),
            SeaAppointments::new(db.clone(), keys.clone()),
            SeaPatients::new(db.clone(), keys),
        ),
        booking_rules: settings.scheduling.booking_rules(),
        reminder_offsets: settings
            .scheduling
            .reminder_offset_list()
            .unwrap_or_default(),
        // Read on every request; another instance's change shows within
        // a second, and a deleted organization's patients are hidden in
        // the patient queries themselves.
        orgs: SeaOrganizations::remembering(db.clone(), ORG_MEMORY),
        service_keys: SeaServiceKeys::new(db.clone()),
        authenticator,
        key_provider: kek.clone(),
        local,
        reset,
        user_admin,
        events: Arc::new(SeaAuditLog::new(db.clone())),
        audit: SeaAuditLog::new(db.clone()),
        audit_key: audit_signing_key(settings)?.verifying_key(),
        verifying: Arc::default(),
        base_domain: settings
            .http
            .base_domain
            .as_ref()
            .map(|d| d.to_ascii_lowercase()),
        limiter,
        trusted_proxies: settings.http.trusted_proxies(),
        trusted_origins: crate::http::cookies::TrustedOrigins::new(&settings.http.cors_origins()),
        cursor_key,
        db,
    })
}

/// A server accepting connections.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    db: Database,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    watcher: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, and waits.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.task.await;
        self.watcher.abort();
    }
}

/// How long an organization read by id is answered from memory.
const ORG_MEMORY: Duration = Duration::from_secs(1);

/// Debug builds in `dev` only: a route that panics, so the tests can prove
/// that a panicking handler answers a generic 500 and the worker survives.
#[cfg(debug_assertions)]
fn debug_routes(cfg: &mut web::ServiceConfig, dev: bool) {
    /// Panics, quoting `?say=` (what a careless `unwrap` on user data does).
    async fn deliberate_panic(req: actix_web::HttpRequest) -> actix_web::HttpResponse {
        let said =
            web::Query::<std::collections::HashMap<String, String>>::from_query(req.query_string())
                .ok()
                .and_then(|q| q.get("say").cloned())
                .unwrap_or_default();
        panic!("deliberate panic (debug route) {said}")
    }
    if dev {
        cfg.route("/__debug/panic", web::get().to(deliberate_panic));
    }
}

#[cfg(not(debug_assertions))]
fn debug_routes(_: &mut web::ServiceConfig, _: bool) {}

/// Re-reads the kill switch, and the witness backlog when there is one,
/// until aborted.
async fn watch(kill_switch: Arc<KillSwitchWatch>, witness: Option<Arc<WitnessGate>>) {
    match witness {
        Some(gate) => {
            tokio::join!(kill_switch.poll(), gate.poll());
        }
        None => kill_switch.poll().await,
    }
}

/// Starts serving `state` on `listener`.
pub fn start(
    state: AppState,
    settings: &impl AsConfig,
    listener: TcpListener,
) -> anyhow::Result<Running> {
    let settings = settings.as_config();
    let settings: &Config = &settings;
    let addr = listener.local_addr()?;
    let db = state.db.clone();
    let watcher = tokio::spawn(watch(state.kill_switch.clone(), state.witness.clone()));
    let state = web::Data::new(state);
    let limit = settings.limits.body_limit_bytes;
    let origins = settings.http.cors_origins();
    let dev = settings.profile == Profile::Dev;
    let security_headers = SecurityHeaders {
        hsts: settings.profile == Profile::Production,
    };
    let workers = settings
        .http
        .worker_threads(std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(security_headers)
            .app_data(extract::json_config(limit))
            .app_data(web::PayloadConfig::new(limit))
            .app_data(extract::path_config())
            .app_data(extract::query_config())
            .wrap(from_fn(crate::http::witness::middleware))
            .wrap(from_fn(kill_switch::middleware))
            .wrap(headers::cors(&origins))
            .wrap(from_fn(wait_budget::middleware))
            .wrap(from_fn(request_id::middleware))
            // Outermost: every problem on /fhir/ (the framework's own too)
            // leaves as an OperationOutcome.
            .wrap(from_fn(crate::fhir::outcome::middleware))
            // Outside what rewrites bodies: compresses the final one.
            .wrap(Compress::default())
            .configure(routes::configure)
            .configure(|cfg| debug_routes(cfg, dev))
            .default_service(web::to(routes::not_found))
    })
    .workers(workers)
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(settings.http.shutdown_timeout_secs)
    .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    Ok(Running {
        addr,
        db,
        handle,
        task,
        watcher,
    })
}

/// `carapace serve`: runs until SIGTERM or SIGINT, then drains.
pub async fn serve(settings: &Config) -> anyhow::Result<()> {
    let addr = settings.http.bind_addr()?;
    let state = prepare(settings).await?;
    let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    let metrics = state.metrics.clone();
    let running = start(state, settings, listener)?;
    let db_for_shutdown = running.db.clone();
    tracing::info!(addr = %running.addr, profile = ?settings.profile, "carapace listening");
    if settings.profile == Profile::Dev {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "Carapace (dev) listening on http://{a}\n  API docs:  http://{a}/docs/\n  a token:   cargo run --release -- org create --name \"Demo Clinic\" --slug demo\n             cargo run --release -- dev-token --org demo --role clinician --mfa",
            a = running.addr
        );
    }
    let jobs = Jobs::start(settings, &running.db, &metrics)?;
    shutdown_signal().await;
    jobs.stop_before_drain();
    tracing::info!("shutdown signal received; draining in-flight requests");
    tokio::time::timeout(
        Duration::from_secs(settings.http.shutdown_timeout_secs + 5),
        running.stop(),
    )
    .await
    .context("shutdown timed out")?;
    // The periodic pass under way finishes; no new one starts.
    jobs.finish(Duration::from_secs(settings.http.shutdown_timeout_secs))
        .await;
    drop(db_for_shutdown);
    // Every event written before the stop joins its chain, signed (and
    // anchored in the witness), before the process ends: on a pool of its
    // own (the server's pooled connections may belong to the workers that
    // just stopped), waiting for each organization's chain lock rather
    // than skipping it.
    let last_db = Database::connect(&settings.database.db())
        .await
        .context("connecting to chain the last audit events")?;
    let last = audit_chainer(settings, &last_db, Some(Duration::ZERO))?;
    let chained = last.run_to_completion().await;
    last_db.close().await;
    match chained {
        Ok(n) => tracing::info!(chained = n, "the last audit events are chained"),
        Err(e) => {
            tracing::error!(error = %e, "chaining the last audit events failed");
            bail!("chaining the last audit events failed: run `carapace audit verify`");
        }
    }
    tracing::info!("stopped");
    // The exporter blocks while it sends: off the async threads.
    let _ = tokio::task::spawn_blocking(crate::logging::flush_traces).await;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
