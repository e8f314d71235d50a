//! Start-up and shutdown: connect, migrate where allowed, check the
//! database posture, wire the state, serve until SIGTERM/SIGINT.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::middleware::{Compress, from_fn};
use actix_web::{App, HttpServer, web};
use anyhow::{Context as _, bail};
use carapace_auth::local::admin::UserAdmin;
use carapace_auth::local::{LocalAuth, PasswordReset, SessionLimits};
use carapace_infra::accounts::{SeaAccounts, SeaResets, SeaSessions};
use carapace_infra::alerts::{AlertDeliverer, WebhookTarget};
use carapace_infra::audit::{AuditChainer, SeaAuditLog};
use carapace_infra::dev_token::DevTokens;
use carapace_infra::keys::KeyRing;
use carapace_infra::kill_switch::SeaKillSwitch;
use carapace_infra::local_tokens::LocalTokens;
use carapace_infra::mail::LettreMailer;
use carapace_infra::oidc::OidcVerifier;
use carapace_infra::outbound::SafeHttp;
use carapace_infra::purge::purge_expired;
use carapace_infra::rate_limit::Limiter;
use carapace_infra::service_keys::SeaServiceKeys;
use carapace_infra::sms::TwilioSms;
use carapace_infra::tokens::Verifiers;
use carapace_infra::{
    Backend, Channels, Database, ReminderDeliverer, ReminderReport, SeaAppointments,
    SeaCalendarFeeds, SeaConsultations, SeaMedications, SeaOrganizations, SeaPatients, SeaResearch,
    SeaVerifications,
};
use carapace_phi_crypto::{LocalSealer, SecretSealer};
use carapace_tenancy::cursor::CursorKey;
use secrecy::{ExposeSecret as _, SecretString};
use std::sync::Arc;

use crate::http::headers::{self, SecurityHeaders};
use crate::http::kill_switch::{self, KillSwitchWatch};
use crate::http::witness::WitnessGate;
use crate::http::{extract, request_id, wait_budget};
use crate::routes;
use crate::settings::{Profile, Settings};
use crate::state::AppState;

/// Connects to the database for commands: on SQLite migrations are applied
/// (embedded, single-user); on PostgreSQL only `migrate` changes the schema.
pub async fn connect(settings: &Settings) -> anyhow::Result<Database> {
    let db = Database::connect(&settings.db())
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
pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    if settings.backend() == Some(Backend::Postgres) && settings.database_owner_url.is_none() {
        bail!(
            "CARAPACE_DATABASE_OWNER_URL is not set: migrations run as the schema owner, not as the server's role"
        );
    }
    let db = Database::connect(&settings.owner_db())
        .await
        .context("connecting as the schema owner")?;
    db.migrate().await.context("applying migrations")?;
    db.close().await;
    Ok(())
}

/// Builds the application state: database (migrated if allowed, posture
/// checked), token verifier and cursor key. Fails closed on any problem.
pub async fn prepare(settings: &Settings) -> anyhow::Result<AppState> {
    carapace_infra::jwt_crypto::install();
    if settings.backend() == Some(Backend::Postgres) && settings.database_owner_url.is_some() {
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
    let oidc = match settings.oidc() {
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
        limits: settings.session_limits(),
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
    let cursor_key = match &settings.cursor_secret {
        Some(secret) => CursorKey::from_secret(secret.expose_secret().as_bytes()),
        None => CursorKey::random(),
    };
    let limiter = Arc::new(
        Limiter::connect(settings.redis_url.as_ref(), settings.quotas())
            .await
            .context("CARAPACE_REDIS_URL: Redis did not answer")?,
    );
    let kill_switch = Arc::new(KillSwitchWatch::load(SeaKillSwitch::new(db.clone())).await);
    let witness = match settings.audit_witness_url {
        Some(_) => Some(Arc::new(
            WitnessGate::load(
                db.clone(),
                Duration::from_secs(settings.audit_witness_max_backlog_secs),
            )
            .await,
        )),
        None => None,
    };
    let operator_org = match &settings.operator_org {
        Some(slug) => Some(
            carapace_tenancy::OrgSlug::parse(slug)
                .map_err(|e| anyhow::anyhow!("CARAPACE_OPERATOR_ORG: {e}"))?,
        ),
        None => None,
    };
    Ok(AppState {
        metrics: Arc::new(crate::metrics::Metrics::new()),
        metrics_token: settings.metrics_token.as_ref().map(|t| {
            use sha2::Digest as _;
            sha2::Sha256::digest(t.expose_secret().as_bytes()).into()
        }),
        slow_request: Duration::from_millis(settings.slow_request_ms),
        kill_switch,
        witness,
        operator_org,
        patients: SeaPatients::new(db.clone(), keys.clone()),
        appointments: SeaAppointments::new(db.clone(), keys.clone()),
        medications: SeaMedications::new(db.clone(), keys.clone()),
        consultations: SeaConsultations::new(db.clone()),
        verifications: SeaVerifications::new(db.clone(), keys.clone()),
        ai: match settings.ai_provider.as_str() {
            "local" => Some(carapace_infra::assistant::Ai::Local(
                carapace_infra::assistant::LocalAi,
            )),
            _ => settings.openai().map(|(openai, policy)| {
                carapace_infra::assistant::Ai::OpenAi(carapace_infra::assistant::OpenAiChat::new(
                    SafeHttp::new(policy),
                    openai,
                ))
            }),
        },
        ai_baa_signed: settings.ai_baa_signed,
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
        booking_rules: settings.booking_rules(),
        reminder_offsets: settings.reminder_offset_list().unwrap_or_default(),
        // Read on every request; another instance's change shows within
        // a second, and a deleted organization's patients are hidden in
        // the patient queries themselves.
        orgs: SeaOrganizations::remembering(db.clone(), ORG_MEMORY),
        service_keys: SeaServiceKeys::new(db.clone()),
        authenticator,
        local,
        reset,
        user_admin,
        events: Arc::new(SeaAuditLog::new(db.clone())),
        audit: SeaAuditLog::new(db.clone()),
        base_domain: settings
            .base_domain
            .as_ref()
            .map(|d| d.to_ascii_lowercase()),
        limiter,
        trusted_proxies: settings.trusted_proxies(),
        trusted_origins: crate::http::cookies::TrustedOrigins::new(&settings.cors_origins()),
        cursor_key,
        db,
    })
}

/// The Ed25519 key signing audit checkpoints (PKCS#8 PEM). In `dev`, with
/// no configured key, one is generated into `<data_dir>/audit-signing-key.pem`.
pub fn audit_signing_key(settings: &Settings) -> anyhow::Result<ed25519_dalek::SigningKey> {
    use ed25519_dalek::pkcs8::DecodePrivateKey as _;
    let pem = match &settings.audit_signing_key_file {
        Some(path) => read_secret(path)?,
        None => read_or_create(&settings.data_dir.join("audit-signing-key.pem"), || {
            LocalTokens::generate_pem().map_err(anyhow::Error::from)
        })?,
    };
    ed25519_dalek::SigningKey::from_pkcs8_pem(pem.expose_secret().trim()).map_err(|_| {
        anyhow::anyhow!("CARAPACE_AUDIT_SIGNING_KEY_FILE: not an Ed25519 PKCS#8 PEM key")
    })
}

/// The alert deliverer, when a webhook is configured.
pub fn alert_deliverer(settings: &Settings, db: &Database) -> Option<AlertDeliverer> {
    let url = settings.alert_webhook_url.clone()?;
    let secret = settings.alert_webhook_secret.clone()?;
    Some(AlertDeliverer::new(
        db.clone(),
        SafeHttp::new(settings.alert_policy()),
        WebhookTarget { url, secret },
    ))
}

/// The reminder deliverer: e-mail through the mailer, SMS when configured.
pub type Reminders = ReminderDeliverer<Channels<LettreMailer, TwilioSms>>;

/// The reminder deliverer of these settings.
pub fn reminder_deliverer(settings: &Settings, db: &Database) -> anyhow::Result<Reminders> {
    let keys = Arc::new(KeyRing::new(db.clone(), sealer(settings)?));
    let sms = settings
        .sms()
        .map(|(sms, policy)| TwilioSms::new(SafeHttp::new(policy), sms));
    Ok(ReminderDeliverer::new(
        db.clone(),
        SeaPatients::new(db.clone(), keys),
        Channels {
            email: Some(mailer(settings)?),
            sms,
        },
    ))
}

/// How often due reminders are sent.
const REMINDERS_EVERY: Duration = Duration::from_secs(30);

/// Sends due reminders every `every`, until aborted (one instance at a time).
async fn remind_periodically(db: Database, deliverer: Reminders, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        let pass = deliverer.run_once(time::OffsetDateTime::now_utc());
        match db.exclusively("reminders.deliver", pass).await {
            Ok(Some(Ok(r))) if r != ReminderReport::default() => {
                tracing::info!(
                    sent = r.sent,
                    skipped = r.skipped,
                    failed = r.failed,
                    "reminders delivered"
                );
            }
            Ok(Some(Err(e))) => tracing::error!(error = %e, "delivering reminders failed"),
            Err(e) => tracing::error!(error = %e, "electing the reminder deliverer failed"),
            Ok(_) => {}
        }
    }
}

/// How often due alerts are sent.
const ALERTS_EVERY: Duration = Duration::from_secs(2);

/// Sends due alerts every `every`, until aborted.
async fn deliver_periodically(
    db: Database,
    deliverer: AlertDeliverer,
    metrics: Arc<crate::metrics::Metrics>,
    every: Duration,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        ticker.tick().await;
        match db.exclusively("alerts.deliver", deliverer.run_once()).await {
            Ok(Some(Ok(r))) => metrics.alerts_pass(r.delivered, r.failed),
            Ok(Some(Err(e))) => tracing::error!(error = %e, "delivering alerts failed"),
            Err(e) => tracing::error!(error = %e, "electing the alert deliverer failed"),
            Ok(_) => {}
        }
    }
}

/// How often new audit events are linked into their chains.
const CHAIN_EVERY: Duration = Duration::from_secs(1);

/// The audit chainer of these settings: a checkpoint at most every
/// `CARAPACE_AUDIT_ANCHOR_EVERY_SECS` per organization (`every` overrides
/// it: zero for the last pass), each anchored in the witness when one is
/// configured.
pub fn audit_chainer(
    settings: &Settings,
    db: &Database,
    every: Option<Duration>,
) -> anyhow::Result<AuditChainer> {
    let every = every.unwrap_or_else(|| crate::witness::anchor_every(settings));
    let chainer = AuditChainer::new(db.clone(), audit_signing_key(settings)?, every);
    Ok(match crate::witness::audit_witness(settings)? {
        Some(w) => chainer.with_witness(w),
        None => chainer,
    })
}

/// Links audit events into their chains every `every`, until `stop` says
/// so; a pass under way always finishes (it is never cut off holding an
/// organization's chain lock).
async fn chain_periodically(
    db: Database,
    chainer: Arc<AuditChainer>,
    metrics: Arc<crate::metrics::Metrics>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.changed() => return,
        }
        match db.exclusively("audit.chain", chainer.run_once()).await {
            Ok(Some(Ok(chained))) => metrics.audit_pass(chained),
            Ok(Some(Err(e))) => tracing::error!(error = %e, "chaining audit events failed"),
            Err(e) => tracing::error!(error = %e, "electing the audit chainer failed"),
            Ok(_) => {}
        }
    }
}

/// The dev-token signer/verifier when dev tokens are on. In `dev`, with no
/// configured secret, a random one is kept in `<data_dir>/dev-token-secret`
/// so `carapace dev-token` and the server agree.
pub fn dev_tokens(settings: &Settings) -> anyhow::Result<Option<DevTokens>> {
    if !settings.dev_tokens_enabled() {
        return Ok(None);
    }
    let secret = match (&settings.dev_token_secret, settings.profile) {
        (Some(s), _) => s.clone(),
        (None, Profile::Dev) => local_dev_secret(&settings.data_dir)?,
        (None, Profile::Production) => {
            bail!("CARAPACE_DEV_TOKEN_SECRET: dev tokens are refused in production")
        }
    };
    Ok(Some(
        DevTokens::new(&secret).context("CARAPACE_DEV_TOKEN_SECRET")?,
    ))
}

fn local_dev_secret(dir: &Path) -> anyhow::Result<SecretString> {
    read_or_create(&dir.join("dev-token-secret"), || {
        let bytes: [u8; 32] = rand::random();
        Ok(SecretString::from(
            bytes.iter().map(|b| format!("{b:02x}")).collect::<String>(),
        ))
    })
}

/// The key provider sealing secrets at rest: KMS when `kms_key_id` is set,
/// else the local key file (in `dev` generated under the data directory
/// when unset).
pub fn sealer(settings: &Settings) -> anyhow::Result<Arc<dyn SecretSealer>> {
    if let Some(key_id) = &settings.kms_key_id {
        return kms_sealer(settings, key_id);
    }
    let hex = match &settings.master_key_file {
        Some(path) => read_secret(path)?,
        None => read_or_create(&settings.data_dir.join("master.key"), || {
            let key: [u8; 32] = rand::random();
            Ok(SecretString::from(
                key.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            ))
        })?,
    };
    sealer_from_hex(&hex)
}

/// A KMS key provider for `key_id`, with the endpoint, region and
/// credentials of `settings` (validated by [`Settings::problems`]).
#[cfg(feature = "kms")]
pub fn kms_sealer(settings: &Settings, key_id: &str) -> anyhow::Result<Arc<dyn SecretSealer>> {
    use anyhow::Context as _;
    let kms = carapace_infra::kms::KmsSettings {
        endpoint: settings
            .kms_endpoint_url()
            .context("CARAPACE_KMS_REGION or CARAPACE_KMS_ENDPOINT is required for KMS")?,
        region: settings
            .kms_region
            .clone()
            .context("CARAPACE_KMS_REGION is required for KMS")?,
        key_id: key_id.to_owned(),
        access_key_id: settings
            .kms_access_key_id
            .clone()
            .context("KMS credentials are required")?,
        secret_access_key: settings
            .kms_secret_access_key
            .clone()
            .context("KMS credentials are required")?,
        session_token: settings.kms_session_token.clone(),
        timeout: std::time::Duration::from_secs(5),
    };
    Ok(Arc::new(carapace_infra::kms::KmsSealer::new(&kms)?))
}

/// Without the `kms` feature there is no KMS provider.
#[cfg(not(feature = "kms"))]
pub fn kms_sealer(_: &Settings, _: &str) -> anyhow::Result<Arc<dyn SecretSealer>> {
    bail!("this build has no KMS support (build with the `kms` feature)")
}

/// The sealer of a key file written by `carapace keys init`.
pub fn sealer_from_file(path: &Path) -> anyhow::Result<Arc<dyn SecretSealer>> {
    sealer_from_hex(&read_secret(path)?)
}

fn sealer_from_hex(hex: &SecretString) -> anyhow::Result<Arc<dyn SecretSealer>> {
    let hex = hex.expose_secret().trim();
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .filter_map(|i| {
            hex.get(i..i + 2)
                .and_then(|b| u8::from_str_radix(b, 16).ok())
        })
        .collect();
    let key: [u8; 32] = match bytes.try_into() {
        Ok(k) if hex.len() == 64 => k,
        _ => bail!("a key-encryption key file must hold exactly 64 hex characters (32 bytes)"),
    };
    Ok(Arc::new(LocalSealer::new(&key)))
}

/// The mailer: SMTP when configured, else (dev) the outbox directory.
fn mailer(settings: &Settings) -> anyhow::Result<LettreMailer> {
    let mailer = match &settings.smtp_url {
        Some(url) => LettreMailer::smtp(url, &settings.mail_from)?,
        None => LettreMailer::outbox(settings.data_dir.join("outbox"), &settings.mail_from)?,
    };
    Ok(mailer)
}

/// The signer of Carapace's own access tokens, when local accounts are on.
/// In `dev`, with no configured key, one is generated into
/// `<data_dir>/signing-key.pem`.
pub fn local_tokens(settings: &Settings) -> anyhow::Result<Option<LocalTokens>> {
    if !settings.local_accounts_enabled() {
        return Ok(None);
    }
    let current = match &settings.signing_key_file {
        Some(path) => read_secret(path)?,
        None => read_or_create(&settings.data_dir.join("signing-key.pem"), || {
            LocalTokens::generate_pem().map_err(anyhow::Error::from)
        })?,
    };
    let previous = settings
        .signing_key_previous_files
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| read_secret(Path::new(p)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Some(
        LocalTokens::new(&current, &previous).context("CARAPACE_SIGNING_KEY_FILE")?,
    ))
}

fn read_secret(path: &Path) -> anyhow::Result<SecretString> {
    std::fs::read_to_string(path)
        .map(SecretString::from)
        .with_context(|| format!("reading {}", path.display()))
}

/// Reads a secret file, or creates it (mode 0600) with `make`'s value.
fn read_or_create(
    path: &Path,
    make: impl FnOnce() -> anyhow::Result<SecretString>,
) -> anyhow::Result<SecretString> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        return Ok(SecretString::from(existing.trim().to_owned()));
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let value = make()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut f) => f
            .write_all(value.expose_secret().as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Ok(SecretString::from(
                std::fs::read_to_string(path)?.trim().to_owned(),
            ));
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    }
    Ok(value)
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
    settings: &Settings,
    listener: TcpListener,
) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let db = state.db.clone();
    let watcher = tokio::spawn(watch(state.kill_switch.clone(), state.witness.clone()));
    let state = web::Data::new(state);
    let limit = settings.body_limit_bytes;
    let origins = settings.cors_origins();
    let dev = settings.profile == Profile::Dev;
    let security_headers = SecurityHeaders {
        hsts: settings.profile == Profile::Production,
    };
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(security_headers)
            .app_data(extract::json_config(limit))
            .app_data(web::PayloadConfig::new(limit))
            .app_data(extract::path_config())
            .app_data(extract::query_config())
            .wrap(Compress::default())
            .wrap(from_fn(crate::http::witness::middleware))
            .wrap(from_fn(kill_switch::middleware))
            .wrap(headers::cors(&origins))
            .wrap(from_fn(wait_budget::middleware))
            .wrap(from_fn(request_id::middleware))
            .configure(routes::configure)
            .configure(|cfg| debug_routes(cfg, dev))
            .default_service(web::to(routes::not_found))
    })
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(settings.shutdown_timeout_secs)
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
pub async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let addr = settings.bind_addr()?;
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
    let purge = tokio::spawn(purge_periodically(running.db.clone(), PURGE_EVERY));
    let partitions = tokio::spawn(carapace_infra::audit_partitions::maintain_periodically(
        running.db.clone(),
        carapace_infra::audit_partitions::MAINTAIN_EVERY,
    ));
    let chainer = Arc::new(audit_chainer(settings, &running.db, None)?);
    let (stop_chaining, chaining_stopped) = tokio::sync::watch::channel(false);
    let chaining = tokio::spawn(chain_periodically(
        running.db.clone(),
        chainer.clone(),
        metrics.clone(),
        CHAIN_EVERY,
        chaining_stopped,
    ));
    let alerting = alert_deliverer(settings, &running.db).map(|d| {
        tokio::spawn(deliver_periodically(
            running.db.clone(),
            d,
            metrics.clone(),
            ALERTS_EVERY,
        ))
    });
    let reminding = tokio::spawn(remind_periodically(
        running.db.clone(),
        reminder_deliverer(settings, &running.db)?,
        REMINDERS_EVERY,
    ));
    shutdown_signal().await;
    purge.abort();
    partitions.abort();
    reminding.abort();
    tracing::info!("shutdown signal received; draining in-flight requests");
    tokio::time::timeout(
        Duration::from_secs(settings.shutdown_timeout_secs + 5),
        running.stop(),
    )
    .await
    .context("shutdown timed out")?;
    // The periodic pass under way finishes; no new one starts.
    let _ = stop_chaining.send(true);
    let _ = tokio::time::timeout(
        Duration::from_secs(settings.shutdown_timeout_secs),
        chaining,
    )
    .await;
    if let Some(a) = alerting {
        a.abort();
    }
    drop(db_for_shutdown);
    // Every event written before the stop joins its chain, signed (and
    // anchored in the witness), before the process ends: on a pool of its
    // own (the server's pooled connections may belong to the workers that
    // just stopped), waiting for each organization's chain lock rather
    // than skipping it.
    let last_db = Database::connect(&settings.db())
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

/// How often expired sessions and reset codes are deleted.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// Deletes expired sessions, refresh tokens and reset codes every `every`.
async fn purge_periodically(db: Database, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await; // the first tick is immediate; let start-up finish
    loop {
        ticker.tick().await;
        let purge = purge_expired(
            &db,
            time::OffsetDateTime::now_utc(),
            SessionLimits::default(),
        );
        match db.exclusively("credentials.purge", purge).await {
            Ok(Some(Ok(r))) => tracing::info!(
                sessions = r.sessions,
                reset_codes = r.resets,
                "purged expired credentials"
            ),
            Ok(Some(Err(e))) | Err(e) => {
                tracing::error!(error = %e, "purging expired credentials failed");
            }
            // Another instance is purging.
            Ok(None) => {}
        }
    }
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
