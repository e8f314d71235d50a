//! `keys init`, `keys rotate`, `keys status` and `keys retire`: the
//! key-encryption key, and an organization's data-key versions and the
//! rows of every sealed table under each (`carapace_infra::sealed`).

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use carapace_infra::Database;
use carapace_infra::keys::{DEFAULT_KEY_TTL, KeyRing, VERSION_LIST_TTL};
use carapace_infra::sealed::REGISTRY;
use carapace_infra::sealed::rotation::{Retire, Rotation};
use carapace_tenancy::{OrgSlug, OrganizationRepository as _, SubjectId, TenantContext};
use clap::Subcommand;

use super::{EXIT_FAILURE, cli_audit, usage_error};
use crate::server;
use crate::settings::Config;

#[derive(Debug, Subcommand)]
pub(super) enum KeysAction {
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

/// Runs `action`.
pub(super) async fn run(settings: &Config, action: KeysAction) -> anyhow::Result<ExitCode> {
    match action {
        KeysAction::Init { out } => keys_init(&out),
        KeysAction::Rotate {
            org,
            resume,
            kek,
            kek_kms_key_id,
            batch,
        } => {
            let new_kek = match (kek, kek_kms_key_id) {
                (Some(file), None) => Some(NewKek::File(file)),
                (None, Some(id)) => Some(NewKek::Kms(id)),
                _ => None,
            };
            match (org, new_kek) {
                (Some(org), None) => rotate_org(settings, &org, resume, batch).await,
                (None, Some(target)) => keys_rotate_kek(settings, target).await,
                _ => usage_error(
                    "give exactly one of --org SLUG, --kek NEW_KEY_FILE or --kek-kms-key-id ID",
                ),
            }
        }
        KeysAction::Status { org } => status(settings, &org).await,
        KeysAction::Retire { org, version } => retire(settings, &org, version).await,
    }
}

/// Where `keys rotate` moves the data keys.
#[derive(Debug)]
enum NewKek {
    File(PathBuf),
    Kms(String),
}

/// `keys rotate --kek` / `--kek-kms-key-id`: re-wraps every data key and
/// every TOTP seed (sealed under the KEK itself) of every organization
/// under the new key-encryption key.
async fn keys_rotate_kek(settings: &Config, target: NewKek) -> anyhow::Result<ExitCode> {
    let db = server::connect(settings).await?;
    let old = server::sealer(settings)?;
    let keys = KeyRing::new(db.clone(), old.clone());
    let accounts = carapace_infra::accounts::SeaAccounts::new(db.clone());
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
        let ctx = TenantContext::new(org, actor.clone());
        let n = keys.rewrap(&ctx, &*new).await?;
        let seeds = accounts.rewrap_totp_seeds(&ctx, &*old, &*new).await?;
        cli_audit(
            &db,
            org,
            "keys.rewrap_under_new_kek",
            format!("{n} data keys, {seeds} TOTP seeds"),
        )
        .await?;
        let _ = writeln!(
            out,
            "{org}: {n} data keys re-wrapped, {seeds} TOTP seeds re-wrapped"
        );
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

/// What a command on one organization's keys works with.
struct OrgKeys {
    db: Database,
    ctx: TenantContext,
    keys: Arc<KeyRing>,
}

/// Connects and finds the organization `slug` names, with its keys; or
/// the usage error to print.
async fn org_keys(settings: &Config, slug: &str) -> anyhow::Result<Result<OrgKeys, String>> {
    let db = server::connect(settings).await?;
    let ctx = match org_context(&db, slug).await? {
        Ok(ctx) => ctx,
        Err(e) => return Ok(Err(e)),
    };
    let keys = Arc::new(KeyRing::new(db.clone(), server::sealer(settings)?));
    Ok(Ok(OrgKeys { db, ctx, keys }))
}

/// An organization's tenant context for the key commands, or the usage
/// error to print.
async fn org_context(db: &Database, slug: &str) -> anyhow::Result<Result<TenantContext, String>> {
    let Ok(slug) = OrgSlug::parse(slug) else {
        return Ok(Err("--org is not a valid slug".into()));
    };
    let Some(found) = carapace_infra::SeaOrganizations::new(db.clone())
        .find_by_slug(&slug)
        .await?
    else {
        return Ok(Err(format!("no organization with slug {slug:?}")));
    };
    Ok(Ok(TenantContext::new(
        found.id,
        SubjectId::parse("system:keys")?,
    )))
}

/// `keys rotate --org SLUG [--resume]`: starts a new data-key version
/// (unless resuming) and re-encrypts every row of every sealed table under
/// an older one, printing progress per table.
pub(super) async fn rotate_org(
    settings: &Config,
    slug: &str,
    resume: bool,
    batch: u64,
) -> anyhow::Result<ExitCode> {
    let OrgKeys { db, ctx, keys } = match org_keys(settings, slug).await? {
        Ok(found) => found,
        Err(e) => return usage_error(e),
    };
    let rotation = Rotation::new(db.clone(), keys.clone());
    let mut out = std::io::stdout();
    let version = if resume {
        let version = rotation.current(&ctx).await?;
        let _ = writeln!(
            out,
            "{slug}: resuming: rows move to data key version {version}"
        );
        version
    } else {
        let version = keys.rotate(&ctx).await?;
        cli_audit(
            &db,
            ctx.org(),
            "keys.rotate_data_key",
            format!("version {version}"),
        )
        .await?;
        let _ = writeln!(out, "{slug}: data key version {version}");
        // Every server searches under the new version before a row moves
        // to it.
        tokio::time::sleep(2 * VERSION_LIST_TTL).await;
        version
    };
    let batch = batch.clamp(1, 10_000);
    let mut moved = 0;
    for table in REGISTRY {
        let pending = rotation
            .pending(&ctx, table)
            .await
            .with_context(|| format!("counting {}", table.table))?;
        let mut done = 0;
        loop {
            let n = rotation
                .reencrypt_batch(&ctx, table, batch)
                .await
                .with_context(|| format!("re-encrypting {}", table.table))?;
            if n == 0 {
                break;
            }
            done += n;
            let _ = writeln!(
                out,
                "{slug}: {}: {done} of {} re-encrypted",
                table.table,
                pending.max(done)
            );
        }
        if done == 0 {
            let _ = writeln!(out, "{slug}: {}: 0 of 0 re-encrypted", table.table);
        }
        moved += done;
    }
    cli_audit(
        &db,
        ctx.org(),
        "keys.reencrypt",
        format!("{moved} rows under version {version}"),
    )
    .await?;
    let _ = writeln!(
        out,
        "{slug}: done ({moved} rows re-encrypted under version {version})"
    );
    if !resume {
        let _ = writeln!(
            out,
            "{slug}: servers that have not yet looked the key up again keep sealing under the \
             previous version for up to {} s: run `carapace keys rotate --org {slug} --resume` \
             after that, then `carapace keys status --org {slug}`",
            DEFAULT_KEY_TTL.as_secs()
        );
    }
    db.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `keys status --org SLUG`: rows per table and version, the current
/// version, and the versions nothing uses.
pub(super) async fn status(settings: &Config, slug: &str) -> anyhow::Result<ExitCode> {
    let OrgKeys { db, ctx, keys } = match org_keys(settings, slug).await? {
        Ok(found) => found,
        Err(e) => return usage_error(e),
    };
    let versions: Vec<u32> = keys.versions(&ctx).await?.iter().map(|(v, _)| *v).collect();
    let rotation = Rotation::new(db.clone(), keys);
    let usage = rotation.usage(&ctx).await?;
    let current = versions.last().copied();
    let mut out = std::io::stdout();
    let listed: Vec<String> = versions.iter().map(|v| format!("v{v}")).collect();
    let _ = writeln!(
        out,
        "{slug}: data key versions {}; current {}",
        if listed.is_empty() {
            "none".to_owned()
        } else {
            listed.join(", ")
        },
        current.map_or_else(|| "none".to_owned(), |v| format!("v{v}"))
    );
    let mut shown: BTreeSet<u32> = versions.iter().copied().collect();
    let mut keyless = Vec::new();
    for t in &usage {
        shown.extend(t.rows.keys().copied());
        for (v, n) in &t.rows {
            if !versions.contains(v) {
                keyless.push(format!("{} v{v}: {n}", t.table));
            }
        }
    }
    for t in &usage {
        let counts: Vec<String> = shown
            .iter()
            .map(|v| format!("v{v}: {}", t.rows.get(v).copied().unwrap_or(0)))
            .collect();
        let _ = writeln!(out, "{:<26}{}", t.table, counts.join("  "));
    }
    let unused: Vec<String> = versions
        .iter()
        .filter(|v| Some(**v) != current && usage.iter().all(|t| !t.rows.contains_key(v)))
        .map(|v| format!("v{v}"))
        .collect();
    let _ = writeln!(
        out,
        "unused versions: {}",
        if unused.is_empty() {
            "none".to_owned()
        } else {
            format!(
                "{} (retire with `carapace keys retire --org {slug} --version N`)",
                unused.join(", ")
            )
        }
    );
    db.close().await;
    if keyless.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        // Rows under a version whose key is gone can never be read.
        eprintln!(
            "error: rows under a data key that no longer exists: {}",
            keyless.join(", ")
        );
        Ok(ExitCode::from(EXIT_FAILURE))
    }
}

/// `keys retire --org SLUG --version N`: destroys an old version's wrapped
/// keys when nothing uses it; refuses otherwise, saying why.
pub(super) async fn retire(
    settings: &Config,
    slug: &str,
    version: u32,
) -> anyhow::Result<ExitCode> {
    let OrgKeys { db, ctx, keys } = match org_keys(settings, slug).await? {
        Ok(found) => found,
        Err(e) => return usage_error(e),
    };
    let rotation = Rotation::new(db.clone(), keys);
    let refused = match rotation
        .retire(&ctx, version, time::OffsetDateTime::now_utc())
        .await?
    {
        Retire::Retired => {
            cli_audit(
                &db,
                ctx.org(),
                "keys.retire_data_key",
                format!("version {version}"),
            )
            .await?;
            let _ = writeln!(
                std::io::stdout(),
                "{slug}: data key version {version} retired (its wrapped keys are destroyed)"
            );
            None
        }
        Retire::Unknown => Some(format!("{slug} has no data key version {version}")),
        Retire::Current => Some(format!(
            "version {version} is {slug}'s current data key: rotate first"
        )),
        Retire::InUse { table, rows } => Some(format!(
            "{rows} rows of {table} are still under version {version}: run `carapace keys \
             rotate --org {slug} --resume`, then retry"
        )),
        Retire::TooRecent { until } => Some(format!(
            "the version after {version} is too new: a server may still seal under version \
             {version} until {}; retry after then",
            until
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default()
        )),
    };
    db.close().await;
    match refused {
        None => Ok(ExitCode::SUCCESS),
        Some(why) => {
            eprintln!("refused: {why}");
            Ok(ExitCode::from(EXIT_FAILURE))
        }
    }
}
