//! `kill-switch on|off|status`: the switch every instance obeys within
//! about a second.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;
use carapace_tenancy::SubjectId;
use clap::Subcommand;

use super::usage_error;
use crate::server;
use crate::settings::Config;

#[derive(Debug, Subcommand)]
pub(super) enum KillSwitchAction {
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

/// Runs `action`.
pub(super) async fn run(settings: &Config, action: KillSwitchAction) -> anyhow::Result<ExitCode> {
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
