//! `user create` and `dev-token`: local accounts and development tokens.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use carapace_auth::local::{AccountStore as _, Email, check_new_password, hash_password};
use carapace_auth::{AuthError, Role, RoleSet};
use carapace_infra::accounts::SeaAccounts;
use carapace_tenancy::{OrgSlug, OrganizationRepository as _, SubjectId, TenantContext};
use clap::Subcommand;
use secrecy::{ExposeSecret as _, SecretString};

use super::{cli_audit, usage_error};
use crate::server;
use crate::settings::{Config, Profile};

#[derive(Debug, Subcommand)]
pub(super) enum UserAction {
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

/// Runs `action`.
pub(super) async fn run(settings: &Config, action: UserAction) -> anyhow::Result<ExitCode> {
    match action {
        UserAction::Create { org, email, roles } => {
            user_create(settings, &org, &email, &roles).await
        }
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
    settings: &Config,
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

pub(super) async fn dev_token(
    settings: &Config,
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
