//! The baselines: pgbench running each workload's SQL (Carapace's own, and
//! the floor's).

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::cpu::{Reading, Spent};

/// One pgbench slice.
pub(crate) struct Run<'a> {
    /// Who connects (the server's role, or the floor's app role).
    pub(crate) url: &'a str,
    /// The script's file name (without `.sql`) and text.
    pub(crate) name: &'a str,
    pub(crate) script: &'a str,
    /// pgbench's `-D` variables.
    pub(crate) vars: &'a [(&'a str, String)],
}

/// What pgbench reported.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Done {
    pub(crate) tps: f64,
    pub(crate) transactions: u64,
    /// The machine's and pgbench's CPU during the slice.
    pub(crate) cpu: Spent,
}

/// Runs `run` with `clients` clients for `secs` seconds.
pub(crate) fn pgbench(
    run: &Run<'_>,
    dir: &Path,
    clients: usize,
    secs: u64,
) -> anyhow::Result<Done> {
    let script = dir.join(format!("{}.sql", run.name));
    std::fs::write(&script, run.script)?;
    let mut cmd = Command::new("pgbench");
    cmd.args([
        "-n",
        "-j",
        "2",
        "-c",
        &clients.to_string(),
        "-T",
        &secs.to_string(),
    ]);
    for (name, value) in run.vars {
        cmd.arg("-D").arg(format!("{name}={value}"));
    }
    let before = Reading::now();
    let out = cmd
        .arg("-f")
        .arg(&script)
        .arg(run.url)
        .output()
        .context("running pgbench (PostgreSQL's client tools)")?;
    let cpu = before.spent_by_child();
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "pgbench {} failed: {}",
            run.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tps = text
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("pgbench printed no tps")?;
    let transactions = text
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed: "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Done {
        tps,
        transactions,
        cpu,
    })
}
