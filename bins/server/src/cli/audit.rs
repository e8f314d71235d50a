//! `audit verify`, `audit export` and `audit purge`: the trail checked
//! against its checkpoints and the witness (`verify`), exports to a
//! directory or an S3 archive (`export`) and retention (`purge`).

mod export;
mod purge;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use carapace_tenancy::{OrgSlug, OrganizationRepository as _};
use clap::Subcommand;

use self::export::audit_export;
use self::purge::audit_purge;
use self::verify::{audit_verify, audit_verify_export};
use crate::settings::Config;

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

/// What an archive holds, in words: "N events (positions A..=B)".
fn span(body: &carapace_audit::export::ManifestBody) -> String {
    format!(
        "{} events (positions {}..={})",
        body.count, body.first_position, body.last_position
    )
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

/// Runs `action`.
pub(super) async fn run(settings: &Config, action: AuditAction) -> anyhow::Result<ExitCode> {
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
            let days = retain_days.unwrap_or(settings.audit.retention_days);
            audit_export(settings, &org, &from, &to, &out, days).await
        }
        AuditAction::Purge {
            org,
            export,
            archive,
            retain_days,
        } => {
            let days = retain_days.unwrap_or(settings.audit.retention_days);
            audit_purge(settings, &org, export.as_ref(), archive.as_ref(), days).await
        }
    }
}

pub(super) async fn org_id(
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
