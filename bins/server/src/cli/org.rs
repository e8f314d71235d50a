//! `org create` and `org delete`.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use carapace_infra::keys::KeyRing;
use carapace_tenancy::{
    NewOrganization, OrgName, OrgSlug, OrganizationRepository as _, SubjectId, TenantContext,
};
use clap::Subcommand;

use super::{cli_audit, usage_error};
use crate::server;
use crate::settings::Config;

#[derive(Debug, Subcommand)]
pub(super) enum OrgAction {
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

/// Runs `action`.
pub(super) async fn run(settings: &Config, action: OrgAction) -> anyhow::Result<ExitCode> {
    match action {
        OrgAction::Create { name, slug } => org_create(settings, &name, &slug).await,
        OrgAction::Delete { slug, confirm } => org_delete(settings, &slug, &confirm).await,
    }
}

async fn org_create(settings: &Config, name: &str, slug: &str) -> anyhow::Result<ExitCode> {
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

async fn org_delete(settings: &Config, slug: &str, confirm: &str) -> anyhow::Result<ExitCode> {
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
