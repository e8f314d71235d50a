//! The summary: percentiles and medians of the slices, and the
//! machine-readable lines printed at the end.

use std::io::Write;

use crate::cpu::{PerRequest, Spent};
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

/// Everything the run measured, for [`write()`].
pub(crate) struct Measured {
    /// Per workload, the slice of each round against Carapace.
    pub(crate) carapace: Vec<Vec<Slice>>,
    /// Per workload, pgbench's TPS running Carapace's own SQL, each round.
    pub(crate) own_sql: Vec<Vec<f64>>,
    /// Per workload, pgbench's TPS running the floor's SQL, each round.
    pub(crate) floor: Vec<Vec<f64>>,
    /// Per workload, the machine's and pgbench's CPU over the floor's
    /// slices, and the transactions they ran.
    pub(crate) floor_cpu: Vec<(Spent, u64)>,
    /// The floor's W1 without the audit row, each round.
    pub(crate) noaudit: Vec<f64>,
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

pub(crate) fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 { a / b } else { 0.0 }
}

fn joined(v: impl Iterator<Item = f64>) -> String {
    v.map(|x| format!("{x:.0}")).collect::<Vec<_>>().join("/")
}

/// Prints the summary: one line per workload (medians of the rounds; the
/// ratios are Carapace's median rps over pgbench's median tps running
/// Carapace's own SQL and the floor's), the rounds' figures, the floor's
/// cost of auditing, the fixed-load latencies, the server's memory and CPU
/// per request.
pub(crate) fn write(out: &mut impl Write, m: &Measured) -> anyhow::Result<()> {
    for (i, w) in Workload::ALL.iter().enumerate() {
        writeln!(
            out,
            "# rounds {}: carapace rps {}, own SQL tps {}, floor tps {}",
            w.name(),
            joined(m.carapace[i].iter().map(|s| s.rps)),
            joined(m.own_sql[i].iter().copied()),
            joined(m.floor[i].iter().copied()),
        )?;
    }
    writeln!(
        out,
        "workload rps p50_ms p99_ms errors own_sql_tps floor_tps ratio_to_own_sql ratio_to_floor server_cpu_ms_per_request"
    )?;
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
        let requests: u64 = m.carapace[i].iter().map(|s| s.requests).sum();
        let cpu: f64 = m.carapace[i].iter().map(|s| s.server_cpu_s).sum();
        let own = median(m.own_sql[i].clone());
        let floor = median(m.floor[i].clone());
        writeln!(
            out,
            "{} {rps:.0} {p50:.2} {p99:.2} {errors} {own:.0} {floor:.0} {:.2} {:.2} {:.3}",
            w.name(),
            ratio(rps, own),
            ratio(rps, floor),
            ratio(cpu * 1000.0, requests as f64),
        )?;
    }
    writeln!(
        out,
        "cpu_ms_per_request workload side machine load_generator server rest_postgresql"
    )?;
    for (i, w) in Workload::ALL.iter().enumerate() {
        let mut spent = Spent::default();
        for s in &m.carapace[i] {
            spent.add(s.cpu);
        }
        let requests: u64 = m.carapace[i].iter().map(|s| s.requests).sum();
        let server: f64 = m.carapace[i].iter().map(|s| s.server_cpu_s).sum();
        let (floor, transactions) = m.floor_cpu[i];
        writeln!(
            out,
            "cpu_ms_per_request {} carapace {}",
            w.name(),
            PerRequest::of(spent, server, requests)
        )?;
        writeln!(
            out,
            "cpu_ms_per_request {} floor {}",
            w.name(),
            PerRequest::of(floor, 0.0, transactions)
        )?;
    }
    let noaudit = median(m.noaudit.clone());
    let audited = median(m.floor[0].clone());
    writeln!(
        out,
        "floor_W1_noaudit_tps {noaudit:.0} floor_W1_tps {audited:.0} audited_to_noaudit {:.2}",
        ratio(audited, noaudit)
    )?;
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
