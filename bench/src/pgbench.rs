//! The baseline: pgbench running each workload's SQL.

use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::workload::Workload;

/// pgbench running `w`'s SQL as the server's role; its TPS.
pub(crate) fn pgbench(
    url: &str,
    w: Workload,
    dir: &Path,
    clients: usize,
    secs: u64,
    count: usize,
) -> anyhow::Result<f64> {
    let script = dir.join(format!("{}.sql", w.name()));
    std::fs::write(&script, w.script())?;
    let out = Command::new("pgbench")
        .args([
            "-n",
            "-j",
            "2",
            "-c",
            &clients.to_string(),
            "-T",
            &secs.to_string(),
        ])
        .arg("-D")
        .arg(format!("count={count}"))
        .arg("-f")
        .arg(&script)
        .arg(url)
        .output()
        .context("running pgbench (PostgreSQL's client tools)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("pgbench failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    text.lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("pgbench printed no tps")
}
