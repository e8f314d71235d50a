//! `audit purge`: the prefix of a trail past retention, held by a
//! verified export (or an archive written here), deleted behind a signed
//! tombstone.

use std::io::Write as _;
use std::process::ExitCode;

use super::export::{export_to, fetch_export};
use super::{Place, org_id};
use crate::cli::usage_error;
use crate::server;
use crate::settings::Config;

pub(super) async fn audit_purge(
    settings: &Config,
    slug: &str,
    export: Option<&Place>,
    archive: Option<&Place>,
    retain_days: u32,
) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    if settings.database.backend() == Some(carapace_infra::db::Backend::Postgres)
        && settings.database.owner_url.is_none()
    {
        return usage_error(
            "CARAPACE_DATABASE_OWNER_URL is not set: purging runs as the schema owner, not as the server's role",
        );
    }
    let owner = carapace_infra::Database::connect(&settings.database.owner_db())
        .await
        .context("connecting as the schema owner (CARAPACE_DATABASE_OWNER_URL)")?;
    let Some(org) = org_id(&owner, slug).await? else {
        return usage_error(format!("no organization with slug {slug:?}"));
    };
    let cutoff = time::OffsetDateTime::now_utc()
        - time::Duration::days(i64::from(settings.audit.retention_days));
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
            let span = super::span(&manifest.body);
            let _ = writeln!(std::io::stdout(), "{slug}: archived {span} to {place}");
            place.clone()
        }
        (None, None) => return usage_error("--export or --archive is required"),
    };
    // What is removed is what the export holds as read back now.
    // The purge reads the file twice (verifying it, then comparing each
    // position with the stored chain), a line at a time.
    let (manifest, file) = fetch_export(settings, &export).await?;
    let purged =
        carapace_infra::audit::purge_org(&owner, org, cutoff, &manifest, file, &key).await?;
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
