//! The summary: percentiles and medians of the slices, and the
//! machine-readable lines printed at the end.

use std::io::Write;

use crate::workload::{Slice, Workload};

pub(crate) fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64 / 1000.0
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Everything the run measured, for [`write`].
pub(crate) struct Measured {
    /// Per workload, the slice of each round against Carapace.
    pub(crate) carapace: Vec<Vec<Slice>>,
    /// Per workload, pgbench's TPS of each round.
    pub(crate) baseline: Vec<Vec<f64>>,
    /// The fixed-load latency run.
    pub(crate) fixed: Slice,
    /// Its rate, requests per second.
    pub(crate) fixed_rate: u64,
    /// The server's peak resident memory, KiB.
    pub(crate) rss_kib: u64,
    /// CPU seconds the server spent during the rounds.
    pub(crate) cpu_s: f64,
    /// Requests served during the rounds.
    pub(crate) served: u64,
}

/// Prints the summary: one line per workload, the fixed-load latencies,
/// the server's memory and CPU per request.
pub(crate) fn write(out: &mut impl Write, m: &Measured) -> anyhow::Result<()> {
    writeln!(out, "workload rps p50_ms p99_ms errors ratio_to_pgbench")?;
    for (i, w) in Workload::ALL.iter().enumerate() {
        let rps = median(m.carapace[i].iter().map(|s| s.rps).collect());
        let p50 = median(
            m.carapace[i]
                .iter()
                .map(|s| percentile(&s.latencies_us, 0.5))
                .collect(),
        );
        let p99 = median(
            m.carapace[i]
                .iter()
                .map(|s| percentile(&s.latencies_us, 0.99))
                .collect(),
        );
        let errors: u64 = m.carapace[i].iter().map(|s| s.errors).sum();
        let tps = median(m.baseline[i].clone());
        writeln!(
            out,
            "{} {rps:.0} {p50:.2} {p99:.2} {errors} {:.2}",
            w.name(),
            if tps > 0.0 { rps / tps } else { 0.0 }
        )?;
    }
    writeln!(
        out,
        "fixed_load_{}rps_W1 p50_ms {:.2} p99_ms {:.2} errors {}",
        m.fixed_rate,
        percentile(&m.fixed.latencies_us, 0.5),
        percentile(&m.fixed.latencies_us, 0.99),
        m.fixed.errors
    )?;
    writeln!(out, "server_peak_rss_mib {:.1}", m.rss_kib as f64 / 1024.0)?;
    writeln!(
        out,
        "server_cpu_s_per_1000_requests {:.3}",
        if m.served > 0 {
            m.cpu_s / m.served as f64 * 1000.0
        } else {
            0.0
        }
    )?;
    Ok(())
}
