//! `audit verify`, `audit export` and `audit purge`: the trail checked
//! against its checkpoints and the witness, exports (to a directory or an
//! S3 archive) and retention.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use carapace_tenancy::{OrgSlug, OrganizationRepository as _};
use clap::Subcommand;

use super::{EXIT_FAILURE, usage_error};
use crate::server;
use crate::settings::Settings;

#[derive(Debug, Subcommand)]
pub(super) enum AuditAction {
    /// Verify each organization's hash chain against its signed
    /// checkpoints, or (`--export DIR`) an export offline; names the first
    /// bad position. Exit 1 on any problem.
    Verify {
        /// Only this organization.
        #[arg(long, conflicts_with = "export")]
        org: Option<String>,
        /// An export to check: a directory or `s3://bucket/prefix` (needs
        /// no database).
        #[arg(long, value_parser = place)]
        export: Option<Place>,
        /// With `--org`: the archive a retention purge wrote (a directory
        /// or `s3://bucket/prefix`); checked with the chain, which must
        /// resume exactly where the archive ends.
        #[arg(long, requires = "org", value_parser = place)]
        archive: Option<Place>,
    },
    /// Export an organization's events recorded in [--from, --to) as
    /// NDJSON plus a signed manifest.
    Export {
        /// Organization slug.
        #[arg(long)]
        org: String,
        /// Start (RFC 3339, inclusive).
        #[arg(long)]
        from: String,
        /// End (RFC 3339, exclusive).
        #[arg(long)]
        to: String,
        /// Where `events.ndjson` and `manifest.json` go: a new directory,
        /// or `s3://bucket/prefix` (a bucket with Object Lock; each object
        /// locked in compliance mode for `--retain-days`).
        #[arg(long, value_parser = place)]
        out: Place,
        /// Days an S3 export is locked for (default
        /// CARAPACE_AUDIT_RETENTION_DAYS).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=36_500))]
        retain_days: Option<u32>,
    },
    /// Delete the prefix of an organization's trail older than the
    /// retention period (CARAPACE_AUDIT_RETENTION_DAYS) that a verified
    /// export holds, leaving a signed tombstone. Runs as the schema owner.
    /// With `--archive DIR|s3://bucket/prefix` it first exports that
    /// prefix to the archive itself (and reads back and verifies what it
    /// wrote).
    Purge {
        /// Organization slug.
        #[arg(long)]
        org: String,
        /// An export covering what is deleted (a directory or
        /// `s3://bucket/prefix`).
        #[arg(long, required_unless_present = "archive", conflicts_with = "archive", value_parser = place)]
        export: Option<Place>,
        /// A new archive (a directory, or `s3://bucket/prefix` in a bucket
        /// with Object Lock): export what is past retention there, then
        /// delete it.
        #[arg(long, value_parser = place)]
        archive: Option<Place>,
        /// Days an S3 archive is locked for (default
        /// CARAPACE_AUDIT_RETENTION_DAYS).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=36_500))]
        retain_days: Option<u32>,
    },
}

/// Where an export lives.
#[derive(Clone, Debug)]
pub(super) enum Place {
    /// A local directory.
    Dir(PathBuf),
    /// `s3://bucket/prefix`.
    S3 {
        /// The bucket.
        bucket: String,
        /// The key prefix.
        prefix: String,
    },
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dir(d) => write!(f, "{}", d.display()),
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// `s3://bucket/prefix`, or a directory.
fn place(raw: &str) -> Result<Place, String> {
    if raw.starts_with("s3://") {
        crate::settings::s3_location(raw)
            .map(|(bucket, prefix)| Place::S3 { bucket, prefix })
            .ok_or_else(|| {
                "s3://bucket/prefix: a bucket name (3-63 lower-case letters, digits, '-', '.') and a prefix of letters, digits and -_./".to_owned()
            })
    } else if raw.is_empty() {
        Err("a directory or s3://bucket/prefix".to_owned())
    } else {
        Ok(Place::Dir(PathBuf::from(raw)))
    }
}

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
async fn fetch_export(
    settings: &Settings,
    place: &Place,
) -> anyhow::Result<(carapace_audit::export::Manifest, Vec<u8>)> {
    match place {
        Place::Dir(dir) => read_export(dir),
        Place::S3 { bucket, prefix } => {
            use carapace_audit::export::{EVENTS_FILE, MANIFEST_FILE};
            let archive =
                crate::witness::archive(settings, bucket, prefix, settings.audit_retention_days)?;
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
async fn export_to(
    settings: &Settings,
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

/// Runs `action`.
pub(super) async fn run(settings: &Settings, action: AuditAction) -> anyhow::Result<ExitCode> {
    match action {
        AuditAction::Verify {
            org,
            export: None,
            archive,
        } => audit_verify(settings, org.as_deref(), archive.as_ref()).await,
        AuditAction::Verify {
            export: Some(place),
            ..
        } => audit_verify_export(settings, &place).await,
        AuditAction::Export {
            org,
            from,
            to,
            out,
            retain_days,
        } => {
            let days = retain_days.unwrap_or(settings.audit_retention_days);
            audit_export(settings, &org, &from, &to, &out, days).await
        }
        AuditAction::Purge {
            org,
            export,
            archive,
            retain_days,
        } => {
            let days = retain_days.unwrap_or(settings.audit_retention_days);
            audit_purge(settings, &org, export.as_ref(), archive.as_ref(), days).await
        }
    }
}

async fn org_id(
    db: &carapace_infra::Database,
    slug: &str,
) -> anyhow::Result<Option<carapace_tenancy::OrgId>> {
    let Ok(slug) = OrgSlug::parse(slug) else {
        return Ok(None);
    };
    Ok(carapace_infra::SeaOrganizations::new(db.clone())
        .find_by_slug(&slug)
        .await?
        .map(|o| o.id))
}

fn read_export(
    dir: &std::path::Path,
) -> anyhow::Result<(carapace_audit::export::Manifest, Vec<u8>)> {
    use anyhow::Context as _;
    use carapace_audit::export::{EVENTS_FILE, MANIFEST_FILE};
    let manifest = std::fs::read(dir.join(MANIFEST_FILE))
        .with_context(|| format!("reading {}", dir.join(MANIFEST_FILE).display()))?;
    let manifest = serde_json::from_slice(&manifest).context("manifest.json is not a manifest")?;
    let events = std::fs::read(dir.join(EVENTS_FILE))
        .with_context(|| format!("reading {}", dir.join(EVENTS_FILE).display()))?;
    Ok((manifest, events))
}

async fn audit_verify_export(settings: &Settings, place: &Place) -> anyhow::Result<ExitCode> {
    let key = server::audit_signing_key(settings)?.verifying_key();
    let (manifest, events) = fetch_export(settings, place).await?;
    let mut out = std::io::stdout();
    match carapace_audit::export::verify_export(&manifest, &events, &key) {
        Ok(n) => {
            let _ = writeln!(
                out,
                "{}: export ok: {n} events, positions {}..={}",
                manifest.body.org, manifest.body.first_position, manifest.body.last_position
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(problem) => {
            let _ = writeln!(out, "{}: export TAMPERED: {problem}", manifest.body.org);
            Ok(ExitCode::from(EXIT_FAILURE))
        }
    }
}

async fn audit_export(
    settings: &Settings,
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
    let _ = writeln!(
        std::io::stdout(),
        "{slug}: exported {} events (positions {}..={}) to {out}",
        manifest.body.count,
        manifest.body.first_position,
        manifest.body.last_position,
    );
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

async fn audit_purge(
    settings: &Settings,
    slug: &str,
    export: Option<&Place>,
    archive: Option<&Place>,
    retain_days: u32,
) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    let owner = carapace_infra::Database::connect(&settings.owner_db())
        .await
        .context("connecting as the schema owner (CARAPACE_DATABASE_OWNER_URL)")?;
    let Some(org) = org_id(&owner, slug).await? else {
        return usage_error(format!("no organization with slug {slug:?}"));
    };
    let cutoff = time::OffsetDateTime::now_utc()
        - time::Duration::days(i64::from(settings.audit_retention_days));
    let key = server::audit_signing_key(settings)?;
    let export = match (export, archive) {
        (Some(place), _) => place.clone(),
        (None, Some(place)) => {
            // Everything before the cutoff goes to the archive first,
            // chained and signed; what is written is read back and checked
            // before anything is removed.
            carapace_infra::audit::AuditChainer::new(
                owner.clone(),
                key.clone(),
                std::time::Duration::ZERO,
            )
            .chain_org_to_completion(org)
            .await?;
            let manifest = export_to(
                settings,
                &owner,
                org,
                time::OffsetDateTime::UNIX_EPOCH,
                cutoff,
                &key,
                place,
                retain_days,
            )
            .await?;
            if manifest.body.count == 0 {
                if let Place::Dir(dir) = place {
                    let _ = std::fs::remove_dir_all(dir);
                }
                let _ = writeln!(std::io::stdout(), "{slug}: nothing is past retention");
                owner.close().await;
                return Ok(ExitCode::SUCCESS);
            }
            let _ = writeln!(
                std::io::stdout(),
                "{slug}: archived {} events (positions {}..={}) to {place}",
                manifest.body.count,
                manifest.body.first_position,
                manifest.body.last_position,
            );
            place.clone()
        }
        (None, None) => return usage_error("--export or --archive is required"),
    };
    // What is removed is what the export holds as read back now.
    let (manifest, events) = fetch_export(settings, &export).await?;
    let purged =
        carapace_infra::audit::purge_org(&owner, org, cutoff, &manifest, &events, &key).await?;
    let mut out = std::io::stdout();
    if purged.to < purged.from {
        let _ = writeln!(out, "{slug}: nothing is past retention and in the export");
    } else {
        let _ = writeln!(
            out,
            "{slug}: removed positions {}..={} (past retention, held by the export); tombstone signed",
            purged.from, purged.to
        );
    }
    // Months that every organization's purges have emptied go whole.
    for name in carapace_infra::audit_partitions::drop_empty_before(&owner, cutoff).await? {
        let _ = writeln!(out, "dropped the emptied partition {name}");
    }
    owner.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn audit_verify(
    settings: &Settings,
    org: Option<&str>,
    archive: Option<&Place>,
) -> anyhow::Result<ExitCode> {
    let db = server::connect(settings).await?;
    let key = server::audit_signing_key(settings)?.verifying_key();
    let witness = crate::witness::audit_witness(settings)?;
    let orgs = match org {
        Some(slug) => match org_id(&db, slug).await? {
            Some(id) => vec![id],
            None => return usage_error(format!("no organization with slug {slug:?}")),
        },
        None => carapace_infra::audit::every_org(&db).await?,
    };
    let mut out = std::io::stdout();
    let mut failed = false;
    if let (Some(place), [org]) = (archive, orgs.as_slice()) {
        // The archive alone, then its join with the stored chain.
        let (manifest, events) = fetch_export(settings, place).await?;
        let resumes = carapace_infra::audit::chain_resumes(&db, *org).await?;
        let checked =
            carapace_audit::export::verify_export(&manifest, &events, &key).and_then(|n| {
                if manifest.body.org != *org {
                    return Err(carapace_audit::export::ExportProblem::BadManifestSignature);
                }
                match resumes {
                    Some((position, link)) => {
                        carapace_audit::export::joins(&manifest, position, &link).map(|()| n)
                    }
                    None => Err(carapace_audit::export::ExportProblem::Disjoint {
                        ends: manifest.body.last_position,
                        resumes: 0,
                    }),
                }
            });
        match checked {
            Ok(n) => {
                let _ = writeln!(
                    out,
                    "{org}: archive ok: {n} events, positions {}..={}, the chain resumes after {}",
                    manifest.body.first_position,
                    manifest.body.last_position,
                    manifest.body.last_position
                );
            }
            Err(problem) => {
                failed = true;
                let _ = writeln!(out, "{org}: archive TAMPERED: {problem}");
            }
        }
    }
    for org in orgs {
        let v = carapace_infra::audit::verify_org(&db, org, &key).await?;
        match v.chain {
            Ok(ok) => {
                let _ = writeln!(
                    out,
                    "{org}: ok: {} events chained (head {}), {} signed checkpoints matched, {} awaiting chaining",
                    ok.entries, ok.head, ok.checkpoints, v.pending
                );
            }
            Err(finding) => {
                failed = true;
                let _ = writeln!(
                    out,
                    "{org}: TAMPERED at position {}: {}",
                    finding.position, finding.problem
                );
            }
        }
        if let Some(w) = &witness {
            failed |= !witness_verify(&db, org, &key, w.as_ref(), settings, &mut out).await;
        }
    }
    if let Some(w) = &witness
        && org.is_none()
    {
        match carapace_infra::witness::unknown_orgs(&db, w.as_ref()).await {
            Ok(names) => {
                for name in names {
                    failed = true;
                    let _ = writeln!(
                        out,
                        "{name}: WITNESS: the witness holds checkpoints of this organization, which the database does not have (restored from an older copy?)"
                    );
                }
            }
            Err(e) => {
                failed = true;
                let _ = writeln!(
                    out,
                    "WITNESS UNAVAILABLE: {e}: cannot list its organizations"
                );
            }
        }
    }
    db.close().await;
    Ok(if failed {
        ExitCode::from(EXIT_FAILURE)
    } else {
        ExitCode::SUCCESS
    })
}

/// Compares `org`'s trail with the witness and prints the outcome; false
/// when anything is wrong or the witness cannot be read.
async fn witness_verify(
    db: &carapace_infra::Database,
    org: carapace_tenancy::OrgId,
    key: &ed25519_dalek::VerifyingKey,
    witness: &dyn carapace_audit::witness::Witness,
    settings: &Settings,
    out: &mut impl std::io::Write,
) -> bool {
    let overdue = crate::witness::overdue(settings);
    match carapace_infra::witness::compare_org(db, org, key, witness, overdue).await {
        Ok(r) if r.findings.is_empty() => {
            let _ = writeln!(
                out,
                "{org}: witness: ok: {} witnessed checkpoints matched (anchored head {}), {} awaiting anchoring",
                r.matched, r.anchored, r.unanchored
            );
            true
        }
        Ok(r) => {
            for f in &r.findings {
                let _ = writeln!(out, "{org}: WITNESS: {f}");
            }
            false
        }
        Err(e) => {
            let _ = writeln!(out, "{org}: WITNESS UNAVAILABLE: {e}: cannot compare");
            false
        }
    }
}
