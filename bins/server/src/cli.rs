//! The command line. `--help` and `config check` never touch a database.
//! Each subcommand group has its module: `org`, `accounts` (`user`
//! and `dev-token`), `keys`, `audit` and `kill_switch`; `serve` and
//! `migrate` are the server's own (`crate::server`).

mod accounts;
mod audit;
mod keys;
mod kill_switch;
mod org;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use carapace_tenancy::SubjectId;
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::server;
use crate::settings::{Config, LogFormat, Settings};

/// Exit code for invalid configuration or arguments.
pub const EXIT_CONFIG: u8 = 2;
/// Exit code for a failure while running.
pub const EXIT_FAILURE: u8 = 1;

/// Carapace: a multi-tenant healthcare backend.
#[derive(Debug, Parser)]
#[command(name = "carapace", version, about, long_about = None)]
pub struct Cli {
    /// Settings file (optional; CARAPACE_* variables override it).
    #[arg(long, global = true, default_value = "carapace.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply database migrations as the schema owner.
    Migrate,
    /// Inspect configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Manage organizations.
    Org {
        #[command(subcommand)]
        action: org::OrgAction,
    },
    /// Manage encryption keys.
    Keys {
        #[command(subcommand)]
        action: keys::KeysAction,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        action: audit::AuditAction,
    },
    /// Manage local user accounts.
    User {
        #[command(subcommand)]
        action: accounts::UserAction,
    },
    /// The kill switch: while on, every instance answers 503 to everything
    /// but health, JWKS and the switch itself.
    KillSwitch {
        #[command(subcommand)]
        action: kill_switch::KillSwitchAction,
    },
    /// Ask this instance whether it is ready (`GET /health/ready` on the
    /// address it binds): exit 0 when it answers 200. The container
    /// image's HEALTHCHECK, which has no curl to do it.
    Health,
    /// Mint a development token (dev profile only).
    DevToken {
        /// Organization slug.
        #[arg(long)]
        org: String,
        /// Role (repeat for several): admin, clinician, staff, viewer, patient, compliance, service.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        /// Subject id.
        #[arg(long, default_value = "dev-user")]
        sub: String,
        /// Lifetime in minutes (1-1440).
        #[arg(long, default_value_t = 60)]
        ttl_minutes: u64,
        /// Mark the token as from an MFA session (admin operations and
        /// admin PHI access need one).
        #[arg(long)]
        mfa: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Print the effective configuration (secrets redacted) and every problem.
    Check,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load(&cli.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("configuration error: {e:#}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    // Read grouped from here on: validated once, then passed down.
    let settings = settings.config();
    let problems = settings.problems();
    if let Some(Command::Config {
        action: ConfigAction::Check,
    }) = &cli.command
    {
        let shown = serde_json::to_string_pretty(&settings.redacted()).unwrap_or_default();
        let _ = writeln!(std::io::stdout(), "{shown}");
        for p in &problems {
            eprintln!("configuration error: {p}");
        }
        return if problems.is_empty() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(EXIT_CONFIG)
        };
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("configuration error: {p}");
        }
        eprintln!(
            "refusing to start: {} configuration problem(s)",
            problems.len()
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    init_tracing(&settings);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: could not start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(run(cli.command.unwrap_or(Command::Serve), &settings));
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "command failed");
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

async fn run(command: Command, settings: &Config) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => server::serve(settings).await.map(|()| ExitCode::SUCCESS),
        Command::Migrate => {
            server::migrate(settings).await?;
            let _ = writeln!(std::io::stdout(), "migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { .. } => Ok(ExitCode::SUCCESS),
        Command::Keys { action } => keys::run(settings, action).await,
        Command::Audit { action } => audit::run(settings, action).await,
        Command::Org { action } => org::run(settings, action).await,
        Command::User { action } => accounts::run(settings, action).await,
        Command::KillSwitch { action } => kill_switch::run(settings, action).await,
        Command::Health => health(settings).await,
        Command::DevToken {
            org,
            roles,
            sub,
            ttl_minutes,
            mfa,
        } => accounts::dev_token(settings, &org, &roles, &sub, ttl_minutes, mfa).await,
    }
}

/// `GET /health/ready` on the bound address (loopback when it binds every
/// address), with a short timeout: a hung server is not ready.
async fn health(settings: &Config) -> anyhow::Result<ExitCode> {
    let bind: std::net::SocketAddr = settings.http.bind.parse()?;
    let host = match bind.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    let url = format!(
        "http://{}/health/ready",
        std::net::SocketAddr::new(host, bind.port())
    );
    // Plain HTTP, but the client is built with TLS support: ring, like the
    // rest of the binary.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    match client.get(&url).send().await {
        Ok(res) if res.status() == reqwest::StatusCode::OK => {
            let _ = writeln!(std::io::stdout(), "ready");
            Ok(ExitCode::SUCCESS)
        }
        Ok(res) => {
            let body = res.text().await.unwrap_or_default();
            eprintln!("not ready: {body}");
            Ok(ExitCode::from(EXIT_FAILURE))
        }
        Err(e) => {
            eprintln!("not ready: {url}: {e}");
            Ok(ExitCode::from(EXIT_FAILURE))
        }
    }
}

fn usage_error(message: impl std::fmt::Display) -> anyhow::Result<ExitCode> {
    eprintln!("error: {message}");
    Ok(ExitCode::from(EXIT_CONFIG))
}

/// Records an administrative command in the organization's audit trail
/// (actor `system:cli`); the command fails if it cannot.
async fn cli_audit(
    db: &carapace_infra::Database,
    org: carapace_tenancy::OrgId,
    what: &str,
    about: String,
) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let event = carapace_audit::SecurityEvent::new(
        carapace_audit::SecurityEventKind::AdminAction,
        org,
        SubjectId::parse("system:cli")?,
        what,
    )
    .about(about);
    carapace_infra::audit::SeaAuditLog::new(db.clone())
        .record(&event.to_audit_event())
        .await
        .context("recording the command in the audit trail")
}

/// The OTLP exporter when configured and built in; a failure to set it up
/// is printed and the server runs without it, and readiness names it
/// (`traces`): configured traces are never silently dropped.
#[cfg(feature = "otel")]
fn traces(settings: &Config) -> Option<crate::logging::Traces> {
    let endpoint = settings.telemetry.otel_endpoint.as_deref()?;
    match crate::logging::Traces::to(endpoint) {
        Ok(t) => {
            crate::logging::keep_for_exit(t.handle());
            crate::logging::trace_export_started(Ok(()));
            Some(t)
        }
        Err(e) => {
            eprintln!("CARAPACE_OTEL_ENDPOINT: trace export disabled: {e}");
            crate::logging::trace_export_started(Err("exporter failed to start".to_owned()));
            None
        }
    }
}

#[cfg(not(feature = "otel"))]
fn traces(_: &Config) -> Option<crate::logging::Traces> {
    None
}

fn init_tracing(settings: &Config) {
    crate::logging::route_panics_through_logs();
    let filter = EnvFilter::try_new(&settings.telemetry.log_level)
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let rule = crate::logging::Redaction::new(&settings.telemetry.log_redact_keys);
    let traces = traces(settings);
    let _ = match settings.telemetry.log_format {
        LogFormat::Json => tracing::subscriber::set_global_default(
            crate::logging::json_subscriber(filter, std::io::stderr, rule, traces),
        )
        .map_err(|e| e.to_string()),
        // For a developer's terminal: PHI types still print as [redacted].
        LogFormat::Pretty => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init()
            .map_err(|e| e.to_string()),
    };
}
