//! The command line. `--help` and `config check` never touch a database.

mod audit;
mod keys;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use carapace_auth::local::{AccountStore as _, Email, check_new_password, hash_password};
use carapace_auth::{AuthError, Role, RoleSet};
use carapace_infra::accounts::SeaAccounts;
use carapace_infra::keys::KeyRing;
use carapace_tenancy::TenantContext;
use carapace_tenancy::{NewOrganization, OrgName, OrgSlug, OrganizationRepository as _, SubjectId};
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret as _;
use secrecy::SecretString;
use tracing_subscriber::EnvFilter;

use crate::server;
use crate::settings::{LogFormat, Profile, Settings};

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
        action: OrgAction,
    },
    /// Manage encryption keys.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        action: audit::AuditAction,
    },
    /// Manage local user accounts.
    User {
        #[command(subcommand)]
        action: UserAction,
    },
    /// The kill switch: while on, every instance answers 503 to everything
    /// but health, JWKS and the switch itself.
    KillSwitch {
        #[command(subcommand)]
        action: KillSwitchAction,
    },
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
enum KillSwitchAction {
    /// Stop serving (every instance within about a second).
    On {
        /// Why (1-500 characters); recorded in every organization's audit
        /// trail.
        #[arg(long)]
        reason: String,
    },
    /// Serve again.
    Off {
        /// Why (optional, up to 500 characters).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Print the switch as JSON.
    Status,
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Print the effective configuration (secrets redacted) and every problem.
    Check,
}

#[derive(Debug, Subcommand)]
enum KeysAction {
    /// Create a new key-encryption key file (64 hex characters, mode 0600)
    /// for CARAPACE_MASTER_KEY_FILE; never overwrites.
    Init {
        /// Where to write it.
        #[arg(long)]
        out: PathBuf,
    },
    /// Rotate keys: `--org SLUG` starts a new data key for one organization
    /// and re-encrypts every row of every sealed table under an older one,
    /// in batches (online; `--resume` finishes an interrupted run without
    /// starting another version); `--kek NEW` re-wraps every data key under
    /// a new key-encryption key file (then point CARAPACE_MASTER_KEY_FILE
    /// at it), `--kek-kms-key-id ID` under a KMS key (same region, endpoint
    /// and credentials; then set CARAPACE_KMS_KEY_ID to it).
    Rotate {
        /// Organization whose data key to rotate.
        #[arg(long, conflicts_with_all = ["kek", "kek_kms_key_id"])]
        org: Option<String>,
        /// With `--org`: start no new version; re-encrypt the rows still
        /// under an older one (an interrupted run, or rows sealed by a
        /// server that had not yet seen the new version).
        #[arg(long, requires = "org")]
        resume: bool,
        /// New key-encryption key file (from `carapace keys init`).
        #[arg(long, conflicts_with = "kek_kms_key_id")]
        kek: Option<PathBuf>,
        /// New KMS key (id, ARN or alias).
        #[arg(long)]
        kek_kms_key_id: Option<String>,
        /// Rows per batch (one transaction each).
        #[arg(long, default_value_t = 200)]
        batch: u64,
    },
    /// Print, for each sealed table, an organization's rows per data-key
    /// version, its current version, and the versions no row uses. Exit 1
    /// if rows are under a version whose key no longer exists.
    Status {
        /// Organization slug.
        #[arg(long)]
        org: String,
    },
    /// Destroy an old data-key version of an organization: only when it is
    /// not the current one, no row of any sealed table is under it, and the
    /// next version is older than servers' key cache (6 minutes); refuses
    /// otherwise, naming the table and count. Irreversible.
    Retire {
        /// Organization slug.
        #[arg(long)]
        org: String,
        /// The version to destroy.
        #[arg(long)]
        version: u32,
    },
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Create a local account; the password is read from the first line of
    /// standard input. Prints {"id","email"}.
    Create {
        /// Organization slug.
        #[arg(long)]
        org: String,
        /// Login e-mail.
        #[arg(long)]
        email: String,
        /// Role (repeat for several).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum OrgAction {
    /// Create an organization; prints {"id","slug"}.
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// URL-safe handle (3-63 of a-z, 0-9, -).
        #[arg(long)]
        slug: String,
    },
    /// Delete an organization: it stops resolving at once and its data keys
    /// are destroyed, so its encrypted data can never be read again.
    Delete {
        /// The organization's slug.
        #[arg(long)]
        slug: String,
        /// The slug again, to confirm: this cannot be undone.
        #[arg(long)]
        confirm: String,
    },
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

async fn run(command: Command, settings: &Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve => server::serve(settings).await.map(|()| ExitCode::SUCCESS),
        Command::Migrate => {
            server::migrate(settings).await?;
            let _ = writeln!(std::io::stdout(), "migrations applied");
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { .. } => Ok(ExitCode::SUCCESS),
        Command::Keys {
            action: KeysAction::Init { out },
        } => keys_init(&out),
        Command::Keys {
            action:
                KeysAction::Rotate {
                    org,
                    resume,
                    kek,
                    kek_kms_key_id,
                    batch,
                },
        } => {
            let new_kek = match (kek, kek_kms_key_id) {
                (Some(file), None) => Some(NewKek::File(file)),
                (None, Some(id)) => Some(NewKek::Kms(id)),
                _ => None,
            };
            match (org, new_kek) {
                (Some(org), None) => keys::rotate_org(settings, &org, resume, batch).await,
                (None, Some(target)) => keys_rotate_kek(settings, target).await,
                _ => usage_error(
                    "give exactly one of --org SLUG, --kek NEW_KEY_FILE or --kek-kms-key-id ID",
                ),
            }
        }
        Command::Keys {
            action: KeysAction::Status { org },
        } => keys::status(settings, &org).await,
        Command::Keys {
            action: KeysAction::Retire { org, version },
        } => keys::retire(settings, &org, version).await,
        Command::Audit { action } => audit::run(settings, action).await,
        Command::Org {
            action: OrgAction::Create { name, slug },
        } => org_create(settings, &name, &slug).await,
        Command::Org {
            action: OrgAction::Delete { slug, confirm },
        } => org_delete(settings, &slug, &confirm).await,
        Command::User {
            action: UserAction::Create { org, email, roles },
        } => user_create(settings, &org, &email, &roles).await,
        Command::KillSwitch { action } => kill_switch(settings, action).await,
        Command::DevToken {
            org,
            roles,
            sub,
            ttl_minutes,
            mfa,
        } => dev_token(settings, &org, &roles, &sub, ttl_minutes, mfa).await,
    }
}

async fn kill_switch(settings: &Settings, action: KillSwitchAction) -> anyhow::Result<ExitCode> {
    use carapace_infra::kill_switch::{KillSwitchChange, REASON_MAX, SeaKillSwitch};
    let (engaged, reason) = match action {
        KillSwitchAction::Status => {
            let db = server::connect(settings).await?;
            let s = SeaKillSwitch::new(db)
                .status()
                .await
                .context("reading the kill switch")?;
            let changed_at = s.changed_at.and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
            let _ = writeln!(
                std::io::stdout(),
                "{}",
                serde_json::json!({
                    "engaged": s.engaged,
                    "reason": s.reason,
                    "changed_by": s.changed_by,
                    "changed_at": changed_at,
                })
            );
            return Ok(ExitCode::SUCCESS);
        }
        KillSwitchAction::On { reason } => (true, Some(reason)),
        KillSwitchAction::Off { reason } => (false, reason),
    };
    let reason = reason
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty());
    match &reason {
        None if engaged => return usage_error("--reason: required to turn the kill switch on"),
        Some(r) if r.chars().count() > REASON_MAX => {
            return usage_error("--reason: at most 500 characters");
        }
        _ => {}
    }
    let db = server::connect(settings).await?;
    let state = SeaKillSwitch::new(db)
        .set(&KillSwitchChange {
            engaged,
            reason,
            by: SubjectId::parse("system:cli")?,
            origin: carapace_audit::Origin::default(),
        })
        .await
        .context("setting the kill switch")?;
    let _ = writeln!(
        std::io::stdout(),
        "kill switch {}",
        if state.engaged { "on" } else { "off" }
    );
    Ok(ExitCode::SUCCESS)
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

async fn org_create(settings: &Settings, name: &str, slug: &str) -> anyhow::Result<ExitCode> {
    let (slug, name) = match (OrgSlug::parse(slug), OrgName::parse(name)) {
        (Ok(s), Ok(n)) => (s, n),
        (Err(e), _) => return usage_error(format!("--slug: {e}")),
        (_, Err(e)) => return usage_error(format!("--name: {e}")),
    };
    let db = server::connect(settings).await?;
    let org = carapace_infra::SeaOrganizations::new(db.clone())
        .create(NewOrganization { slug, name })
        .await
        .context("creating the organization")?;
    cli_audit(&db, org.id, "org.create", org.id.to_string()).await?;
    db.close().await;
    let out = serde_json::json!({ "id": org.id, "slug": org.slug });
    let _ = writeln!(std::io::stdout(), "{out}");
    Ok(ExitCode::SUCCESS)
}

async fn org_delete(settings: &Settings, slug: &str, confirm: &str) -> anyhow::Result<ExitCode> {
    let Ok(slug) = OrgSlug::parse(slug) else {
        return usage_error("--slug is not a valid slug");
    };
    if confirm != slug.as_str() {
        return usage_error("--confirm must repeat the slug exactly");
    }
    let db = server::connect(settings).await?;
    let orgs = carapace_infra::SeaOrganizations::new(db.clone());
    let Some(found) = orgs.find_by_slug(&slug).await? else {
        return usage_error(format!("no organization with slug {slug:?}"));
    };
    // First it stops resolving and its sessions and service keys end (no
    // token, login or new key), then its data keys go.
    let ctx = TenantContext::new(found.id, SubjectId::parse("system:org-delete")?);
    // Recorded first: the trail outlives the organization.
    cli_audit(&db, found.id, "org.delete", found.id.to_string()).await?;
    orgs.mark_deleted(&ctx)
        .await
        .context("marking the organization deleted")?;
    let keys = KeyRing::new(db.clone(), server::sealer(settings)?);
    let destroyed = keys.shred(&ctx).await.context("destroying data keys")?;
    db.close().await;
    let out = serde_json::json!({
        "id": found.id,
        "slug": slug,
        "deleted": true,
        "data_keys_destroyed": destroyed,
    });
    let _ = writeln!(std::io::stdout(), "{out}");
    Ok(ExitCode::SUCCESS)
}

/// Where `keys rotate` moves the data keys.
#[derive(Debug)]
enum NewKek {
    File(PathBuf),
    Kms(String),
}

/// `keys rotate --kek` / `--kek-kms-key-id`: re-wraps every data key of
/// every organization under the new key-encryption key.
async fn keys_rotate_kek(settings: &Settings, target: NewKek) -> anyhow::Result<ExitCode> {
    let db = server::connect(settings).await?;
    let keys = KeyRing::new(db.clone(), server::sealer(settings)?);
    let actor = SubjectId::parse("system:keys")?;
    let mut out = std::io::stdout();
    let (new, then) = match &target {
        NewKek::File(path) => (
            server::sealer_from_file(path)?,
            format!("CARAPACE_MASTER_KEY_FILE={}", path.display()),
        ),
        NewKek::Kms(id) => (
            server::kms_sealer(settings, id)?,
            format!("CARAPACE_KMS_KEY_ID={id} (and unset CARAPACE_MASTER_KEY_FILE)"),
        ),
    };
    for org in carapace_infra::all_org_ids(&db).await? {
        let n = keys
            .rewrap(&TenantContext::new(org, actor.clone()), &*new)
            .await?;
        cli_audit(
            &db,
            org,
            "keys.rewrap_under_new_kek",
            format!("{n} data keys"),
        )
        .await?;
        let _ = writeln!(out, "{org}: {n} data keys re-wrapped");
    }
    let _ = writeln!(out, "done: now set {then}");
    db.close().await;
    Ok(ExitCode::SUCCESS)
}

fn keys_init(out: &std::path::Path) -> anyhow::Result<ExitCode> {
    let key: [u8; 32] = rand::random();
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(out) {
        Ok(mut f) => {
            f.write_all(hex.as_bytes())
                .with_context(|| format!("writing {}", out.display()))?;
            let _ = writeln!(std::io::stdout(), "wrote {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => usage_error(format!(
            "{} exists; refusing to overwrite a key",
            out.display()
        )),
        Err(e) => Err(e).with_context(|| format!("creating {}", out.display())),
    }
}

fn parse_roles(roles: &[String]) -> Result<Vec<Role>, String> {
    roles
        .iter()
        .map(|r| {
            r.parse::<Role>().map_err(|_| {
                format!("--role {r:?} is not one of admin, clinician, staff, viewer, patient, compliance, service")
            })
        })
        .collect()
}

async fn user_create(
    settings: &Settings,
    org: &str,
    email: &str,
    roles: &[String],
) -> anyhow::Result<ExitCode> {
    if !settings.local_accounts_enabled() {
        return usage_error("local accounts are off: set CARAPACE_SIGNING_KEY_FILE");
    }
    let Ok(slug) = OrgSlug::parse(org) else {
        return usage_error("--org is not a valid slug");
    };
    let Some(email) = Email::parse(email) else {
        return usage_error("--email is not an e-mail address");
    };
    let roles = match parse_roles(roles) {
        Ok(r) => RoleSet::of(&r),
        Err(e) => return usage_error(e),
    };
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = SecretString::from(line.trim_end_matches(['\r', '\n']).to_owned());
    if let Err(why) = check_new_password(&password) {
        return usage_error(format!("password {why}"));
    }
    let hash = hash_password(&password)?;
    let db = server::connect(settings).await?;
    let found = carapace_infra::SeaOrganizations::new(db.clone())
        .find_by_slug(&slug)
        .await?;
    let Some(found) = found else {
        db.close().await;
        return usage_error(format!("no organization with slug {slug:?}"));
    };
    let ctx = TenantContext::new(found.id, SubjectId::parse("system:cli")?);
    let created = SeaAccounts::new(db.clone())
        .create(&ctx, &email, Some(hash), roles)
        .await;
    let account = match created {
        Ok(a) => a,
        Err(AuthError::EmailTaken) => {
            db.close().await;
            return usage_error("an account with this e-mail exists in the organization");
        }
        Err(e) => return Err(e.into()),
    };
    cli_audit(&db, found.id, "user.create", account.id.to_string()).await?;
    db.close().await;
    let out = serde_json::json!({ "id": account.id.to_string(), "email": account.email.as_str() });
    let _ = writeln!(std::io::stdout(), "{out}");
    Ok(ExitCode::SUCCESS)
}

async fn dev_token(
    settings: &Settings,
    org: &str,
    roles: &[String],
    sub: &str,
    ttl_minutes: u64,
    mfa: bool,
) -> anyhow::Result<ExitCode> {
    if settings.profile != Profile::Dev {
        return usage_error("dev tokens exist only in the dev profile");
    }
    let Some(tokens) = server::dev_tokens(settings)? else {
        return usage_error("dev tokens are disabled (CARAPACE_DEV_TOKENS=false)");
    };
    let slug = match OrgSlug::parse(org) {
        Ok(s) => s,
        Err(e) => return usage_error(format!("--org: {e}")),
    };
    let parsed = match parse_roles(roles) {
        Ok(r) => r,
        Err(e) => return usage_error(e),
    };
    let Ok(subject) = SubjectId::parse(sub) else {
        return usage_error("--sub must be 1-255 bytes without control characters");
    };
    if !(1..=1440).contains(&ttl_minutes) {
        return usage_error("--ttl-minutes must be between 1 and 1440");
    }
    let db = server::connect(settings).await?;
    let found = carapace_infra::SeaOrganizations::new(db.clone())
        .find_by_slug(&slug)
        .await?;
    db.close().await;
    let Some(found) = found else {
        return usage_error(format!(
            "no organization with slug {slug:?}; create it with `carapace org create`"
        ));
    };
    let now = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0);
    let token = tokens.mint_session(
        found.id,
        &subject,
        &parsed,
        mfa,
        now,
        Duration::from_secs(ttl_minutes * 60),
    )?;
    let _ = writeln!(std::io::stdout(), "{}", token.expose_secret());
    Ok(ExitCode::SUCCESS)
}

/// The OTLP exporter when configured and built in; a failure to set it up
/// is printed and the server runs without it (readiness is unaffected:
/// traces are optional).
#[cfg(feature = "otel")]
fn traces(settings: &Settings) -> Option<crate::logging::Traces> {
    let endpoint = settings.otel_endpoint.as_deref()?;
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
fn traces(_: &Settings) -> Option<crate::logging::Traces> {
    None
}

fn init_tracing(settings: &Settings) {
    crate::logging::route_panics_through_logs();
    let filter = EnvFilter::try_new(&settings.log_level).unwrap_or_else(|_| EnvFilter::new("info"));
    let rule = crate::logging::Redaction::new(&settings.log_redact_keys);
    let traces = traces(settings);
    let _ = match settings.log_format {
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
