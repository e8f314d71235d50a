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
use carapace_infra::dev_token::DevTokens;
use carapace_infra::oidc::OidcVerifier;
use carapace_infra::tokens::Verifiers;
use carapace_infra::{Backend, Database, SeaOrganizations, SeaPatients};
use carapace_tenancy::cursor::CursorKey;
use secrecy::{ExposeSecret as _, SecretString};

use crate::http::{extract, request_id};
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
    let authenticator = Verifiers::new(dev_tokens(settings)?, None, oidc);
    let cursor_key = match &settings.cursor_secret {
        Some(secret) => CursorKey::from_secret(secret.expose_secret().as_bytes()),
        None => CursorKey::random(),
    };
    Ok(AppState {
        patients: SeaPatients::new(db.clone()),
        db,
        authenticator,
        cursor_key,
    })
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
    let path = dir.join("dev-token-secret");
    if let Ok(existing) = std::fs::read_to_string(&path) {
        return Ok(SecretString::from(existing.trim().to_owned()));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let bytes: [u8; 32] = rand::random();
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut f) => f
            .write_all(hex.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Ok(SecretString::from(
                std::fs::read_to_string(&path)?.trim().to_owned(),
            ));
        }
        Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
    }
    Ok(SecretString::from(hex))
}

/// A server accepting connections.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Stops accepting, lets in-flight requests finish, and waits.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.task.await;
    }
}

/// Starts serving `state` on `listener`.
pub fn start(
    state: AppState,
    settings: &Settings,
    listener: TcpListener,
) -> anyhow::Result<Running> {
    let addr = listener.local_addr()?;
    let state = web::Data::new(state);
    let limit = settings.body_limit_bytes;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(extract::json_config(limit))
            .app_data(web::PayloadConfig::new(limit))
            .app_data(extract::path_config())
            .app_data(extract::query_config())
            .wrap(Compress::default())
            .wrap(from_fn(request_id::middleware))
            .configure(routes::configure)
            .default_service(web::to(routes::not_found))
    })
    .listen(listener)?
    .disable_signals()
    .shutdown_timeout(settings.shutdown_timeout_secs)
    .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    Ok(Running { addr, handle, task })
}

/// `carapace serve`: runs until SIGTERM or SIGINT, then drains.
pub async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let addr = settings.bind_addr()?;
    let state = prepare(settings).await?;
    let listener = TcpListener::bind(addr).with_context(|| format!("binding {addr}"))?;
    let running = start(state, settings, listener)?;
    tracing::info!(addr = %running.addr, profile = ?settings.profile, "carapace listening");
    if settings.profile == Profile::Dev {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "Carapace (dev) listening on http://{a}\n  API docs:  http://{a}/docs/\n  a token:   cargo run --release -- org create --name \"Demo Clinic\" --slug demo\n             cargo run --release -- dev-token --org demo --role clinician",
            a = running.addr
        );
    }
    shutdown_signal().await;
    tracing::info!("shutdown signal received; draining in-flight requests");
    tokio::time::timeout(
        Duration::from_secs(settings.shutdown_timeout_secs + 5),
        running.stop(),
    )
    .await
    .context("shutdown timed out")?;
    tracing::info!("stopped");
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
