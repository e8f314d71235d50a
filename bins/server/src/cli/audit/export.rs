//! `audit export`, and the export files themselves: written to a new
//! directory or uploaded to an S3 archive, and read back from either.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use super::{Place, org_id};
use crate::cli::{EXIT_FAILURE, usage_error};
use crate::server;
use crate::settings::Config;

/// Largest manifest read back from an archive.
const MANIFEST_MAX: u64 = 1024 * 1024;
/// Largest events file read back from an archive.
const EVENTS_MAX: u64 = 64 * 1024 * 1024 * 1024;

/// A new private scratch directory for an export on its way to or from S3.
fn scratch() -> anyhow::Result<PathBuf> {
    use anyhow::Context as _;
    let dir = std::env::temp_dir().join(format!("carapace-audit-{}", uuid::Uuid::new_v4()));
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(&dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The manifest and events of the export at `place` (an S3 export is
/// downloaded to a scratch directory first, then removed).
/// An export's events file, open for reading a line at a time.
pub(super) type EventsFile = std::io::BufReader<std::fs::File>;

/// The manifest of the export at `place` and its events file, open (from
/// S3: downloaded to a scratch file, removed once opened).
pub(super) async fn fetch_export(
    settings: &Config,
    place: &Place,
) -> anyhow::Result<(carapace_audit::export::Manifest, EventsFile)> {
    match place {
        Place::Dir(dir) => read_export(dir),
        Place::S3 { bucket, prefix } => {
            use carapace_audit::export::{EVENTS_FILE, MANIFEST_FILE};
            let archive =
                crate::witness::archive(settings, bucket, prefix, settings.audit.retention_days)?;
            let dir = scratch()?;
            let fetched = async {
                archive
                    .download(MANIFEST_FILE, &dir.join(MANIFEST_FILE), MANIFEST_MAX)
                    .await
                    .map_err(|e| anyhow::anyhow!("{place}/{MANIFEST_FILE}: {e}"))?;
                archive
                    .download(EVENTS_FILE, &dir.join(EVENTS_FILE), EVENTS_MAX)
                    .await
                    .map_err(|e| anyhow::anyhow!("{place}/{EVENTS_FILE}: {e}"))?;
                read_export(&dir)
            }
            .await;
            let _ = std::fs::remove_dir_all(&dir);
            fetched
        }
    }
}

/// Writes an export of `org`'s `[from, to)` to `place`: a new directory
/// (see [`write_export`]), or an S3 archive that holds no export yet (the
/// export is written and checked in a scratch directory, then uploaded,
/// the manifest last, each object locked for `retain_days`).
#[expect(
    clippy::too_many_arguments,
    reason = "the range, its key and where it goes are each needed"
)]
pub(super) async fn export_to(
    settings: &Config,
    db: &carapace_infra::Database,
    org: carapace_tenancy::OrgId,
    from: time::OffsetDateTime,
    to: time::OffsetDateTime,
    key: &ed25519_dalek::SigningKey,
    place: &Place,
    retain_days: u32,
) -> anyhow::Result<carapace_audit::export::Manifest> {
    match place {
        Place::Dir(dir) => write_export(db, org, from, to, key, dir).await,
        Place::S3 { bucket, prefix } => {
            use carapace_audit::export::{EVENTS_FILE, MANIFEST_FILE};
            let archive = crate::witness::archive(settings, bucket, prefix, retain_days)?;
            let taken = archive
                .exists(MANIFEST_FILE)
                .await
                .map_err(|e| anyhow::anyhow!("{place}: {e}"))?;
            anyhow::ensure!(
                !taken,
                "{place} already holds an export: choose a new prefix"
            );
            let dir = scratch()?;
            let local = dir.join("export");
            let done = async {
                let manifest = write_export(db, org, from, to, key, &local).await?;
                if manifest.body.count > 0 {
                    archive
                        .upload(EVENTS_FILE, &local.join(EVENTS_FILE))
                        .await
                        .map_err(|e| anyhow::anyhow!("{place}/{EVENTS_FILE}: {e}"))?;
                    // The manifest last: its presence marks a whole export.
                    archive
                        .upload(MANIFEST_FILE, &local.join(MANIFEST_FILE))
                        .await
                        .map_err(|e| anyhow::anyhow!("{place}/{MANIFEST_FILE}: {e}"))?;
                }
                anyhow::Ok(manifest)
            }
            .await;
            let _ = std::fs::remove_dir_all(&dir);
            done
        }
    }
}

fn read_export(
    dir: &std::path::Path,
) -> anyhow::Result<(carapace_audit::export::Manifest, EventsFile)> {
    use anyhow::Context as _;
    use carapace_audit::export::{EVENTS_FILE, MANIFEST_FILE};
    let manifest = std::fs::read(dir.join(MANIFEST_FILE))
        .with_context(|| format!("reading {}", dir.join(MANIFEST_FILE).display()))?;
    let manifest = serde_json::from_slice(&manifest).context("manifest.json is not a manifest")?;
    let events = std::fs::File::open(dir.join(EVENTS_FILE))
        .with_context(|| format!("reading {}", dir.join(EVENTS_FILE).display()))?;
    Ok((manifest, std::io::BufReader::new(events)))
}

pub(super) async fn audit_export(
    settings: &Config,
    slug: &str,
    from: &str,
    to: &str,
    out: &Place,
    retain_days: u32,
) -> anyhow::Result<ExitCode> {
    use time::format_description::well_known::Rfc3339;
    let (Ok(from), Ok(to)) = (
        time::OffsetDateTime::parse(from, &Rfc3339),
        time::OffsetDateTime::parse(to, &Rfc3339),
    ) else {
        return usage_error("--from and --to are RFC 3339 times (2026-01-01T00:00:00Z)");
    };
    if from >= to {
        return usage_error("--from must be before --to");
    }
    let db = server::connect(settings).await?;
    let Some(org) = org_id(&db, slug).await? else {
        return usage_error(format!("no organization with slug {slug:?}"));
    };
    let key = server::audit_signing_key(settings)?;
    // Nothing is left out silently: what is pending is chained first, and
    // an export that would still miss events is refused, naming them.
    carapace_infra::audit::AuditChainer::new(db.clone(), key.clone(), std::time::Duration::ZERO)
        .chain_org_to_completion(org)
        .await?;
    let unchained = carapace_infra::audit::unchained_in(&db, org, from, to).await?;
    if unchained > 0 {
        let _ = writeln!(
            std::io::stderr(),
            "{slug}: refusing to export: {unchained} events in the range are not chained yet (a transaction is still open, or the chain is broken: run `carapace audit verify`); nothing written"
        );
        db.close().await;
        return Ok(ExitCode::from(EXIT_FAILURE));
    }
    let manifest = export_to(settings, &db, org, from, to, &key, out, retain_days).await?;
    let span = super::span(&manifest.body);
    let _ = writeln!(std::io::stdout(), "{slug}: exported {span} to {out}");
    db.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Streams an export of `org`'s `[from, to)` into the new directory
/// `out_dir` (written under a temporary name, renamed when complete, so a
/// directory of that name is always a whole export).
async fn write_export(
    db: &carapace_infra::Database,
    org: carapace_tenancy::OrgId,
    from: time::OffsetDateTime,
    to: time::OffsetDateTime,
    key: &ed25519_dalek::SigningKey,
    out_dir: &std::path::Path,
) -> anyhow::Result<carapace_audit::export::Manifest> {
    use anyhow::Context as _;
    if out_dir.exists() {
        anyhow::bail!(
            "{} exists: an export goes into a new directory",
            out_dir.display()
        );
    }
    let mut partial = out_dir.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::create_dir(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let written = async {
        let file = std::fs::File::create(partial.join(carapace_audit::export::EVENTS_FILE))?;
        let mut out = std::io::BufWriter::new(file);
        let manifest =
            carapace_infra::audit::export_org_to(db, org, from, to, key, &mut out).await?;
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::write(
            partial.join(carapace_audit::export::MANIFEST_FILE),
            serde_json::to_vec_pretty(&manifest)?,
        )?;
        std::fs::rename(&partial, out_dir)?;
        anyhow::Ok(manifest)
    }
    .await;
    if written.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    written
}
