//! Audit events at scale (issue #17, `--audit-events N`): the audit trail
//! is filled with `N` synthetic events before the run, generated in SQL,
//! and the chainer's cost is measured on the seeded patients' events
//! chained on top of them.
//!
//! The synthetic events are spread evenly over the 24 months before
//! yesterday (one partition a month) and over every organization, with
//! time-ordered (UUIDv7-shaped) ids, 997 actors, and 20 events per
//! synthetic resource (`history-…`), so the seeded patients' own history
//! (what the access log reads) is the same whatever `N`. They are already
//! chained: a chain row each (positions 1.. per organization, placeholder
//! hashes: the bench database does not verify) and written by an old
//! transaction (`tx` = 1) below each organization's chaining horizon, as
//! history the chainer finished with long ago. The database settles
//! (vacuum, analyze, checkpoint) before anything is measured.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use carapace_infra::audit::AuditChainer;
use carapace_infra::{Database, DbSettings};
use sea_orm::{ConnectionTrait as _, DatabaseConnection, DbBackend, Statement};

/// Generates `n` chained events, then lets the database settle (a
/// `VACUUM (ANALYZE)` of both tables, so the visibility map is set and the
/// hint bits written, and a `CHECKPOINT`, so the run does not pay for
/// flushing what was generated); returns the seconds it took.
pub async fn prefill(owner: &DatabaseConnection, n: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    // One transaction: `now()` is the same for both statements, so the
    // chain rows name exactly the events generated.
    let sql = format!(
        "BEGIN;
         SET LOCAL synchronous_commit = off;
         SELECT audit_events_add_month(m::date) FROM generate_series(
             now() - interval '25 months', now(), interval '1 month') AS m;
         INSERT INTO audit_events (org_id, id, recorded_at, actor, action, resource_type,
                                   resource_id, outcome, body, tx)
         SELECT o.ids[1 + i % o.n],
                (lpad(to_hex((extract(epoch FROM x.t) * 1000)::bigint), 12, '0')
                 || '7' || substr(x.h, 1, 3) || '8' || substr(x.h, 4, 15))::uuid,
                x.t, 'user:history-' || (i % 997), 'patient.read', 'patient',
                'history-' || (i / 20), 'allowed', '{{\"synthetic\":true}}', '1'::xid8
         FROM (SELECT array_agg(id ORDER BY id) AS ids, count(*)::int AS n FROM organizations) o,
              generate_series(0::bigint, {last}) AS i,
              LATERAL (SELECT now() - interval '1 day' - (interval '730 days' / {n}) * ({n} - i) AS t,
                              md5(i::text) AS h) AS x;
         INSERT INTO audit_chain (org_id, position, event_id, leaf, link)
         SELECT o.ids[1 + i % o.n], i / o.n + 1,
                (lpad(to_hex((extract(epoch FROM x.t) * 1000)::bigint), 12, '0')
                 || '7' || substr(x.h, 1, 3) || '8' || substr(x.h, 4, 15))::uuid,
                decode(x.h || x.h, 'hex'), decode(x.h || x.h, 'hex')
         FROM (SELECT array_agg(id ORDER BY id) AS ids, count(*)::int AS n FROM organizations) o,
              generate_series(0::bigint, {last}) AS i,
              LATERAL (SELECT now() - interval '1 day' - (interval '730 days' / {n}) * ({n} - i) AS t,
                              md5(i::text) AS h) AS x;
         INSERT INTO audit_chain_horizons (org_id, horizon)
         SELECT id, '2'::xid8 FROM organizations ON CONFLICT (org_id) DO NOTHING;
         COMMIT;",
        last = n.saturating_sub(1),
    );
    owner.execute_unprepared(&sql).await?;
    // One statement each: VACUUM refuses to run in a multi-statement string.
    for settle in [
        "VACUUM (ANALYZE) audit_events",
        "VACUUM (ANALYZE) audit_chain",
        "CHECKPOINT",
    ] {
        owner.execute_unprepared(settle).await?;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// What chaining the pending events cost.
pub struct ChainerCost {
    /// Events chained.
    pub events: u64,
    /// Wall-clock seconds.
    pub wall_s: f64,
    /// CPU seconds of the chainer's process (this one).
    pub client_cpu_s: f64,
    /// CPU seconds of the database backends serving it.
    pub db_cpu_s: f64,
}

/// CPU seconds so far of every client backend connected to the owner's
/// database, by pid: not autovacuum's workers, which the generated events
/// keep busy for a while. The owner's own connections are counted too (the
/// owner is a pool: the connection that generated the events may or may
/// not be the one asking, so leaving out `pg_backend_pid()` would count
/// one of them whole); between two snapshots they only ask this.
async fn backend_cpu(owner: &DatabaseConnection) -> anyhow::Result<Vec<(u32, f64)>> {
    let rows = owner
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT pid FROM pg_stat_activity
             WHERE datname = current_database() AND backend_type = 'client backend'",
        ))
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get::<i32>("", "pid").ok())
        .filter_map(|pid| u32::try_from(pid).ok())
        .map(|pid| (pid, crate::server::process_stats(pid).1))
        .collect())
}

/// Chains every pending event (the seeded patients' creations) in this
/// process, as the server's chainer does, and measures it.
pub async fn measure_chainer(
    owner: &DatabaseConnection,
    app_url: &str,
) -> anyhow::Result<ChainerCost> {
    let mut settings = DbSettings::new(app_url.to_owned().into());
    settings.pool_max = 4;
    let db = Database::connect(&settings).await?;
    let key = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let chainer = AuditChainer::new(db.clone(), key, std::time::Duration::from_secs(60));
    let before = backend_cpu(owner).await?;
    let (_, self_before) = crate::server::process_stats(std::process::id());
    let started = Instant::now();
    let events = chainer.run_to_completion().await?;
    let wall_s = started.elapsed().as_secs_f64();
    let (_, self_after) = crate::process_stats(std::process::id());
    let after = backend_cpu(owner).await?;
    db.close().await;
    let db_cpu_s = after
        .iter()
        .map(|(pid, cpu)| {
            let was = before
                .iter()
                .find(|(p, _)| p == pid)
                .map_or(0.0, |(_, c)| *c);
            cpu - was
        })
        .sum();
    Ok(ChainerCost {
        events,
        wall_s,
        client_cpu_s: self_after - self_before,
        db_cpu_s,
    })
}

/// The rounds of an audit-at-scale run: W1 and the access log against
/// Carapace, alternating, then their medians (rps and p99).
pub async fn rounds(
    out: &mut impl Write,
    target: &Arc<crate::workload::Target>,
    clients: usize,
    seconds: u64,
    rounds: usize,
    max: u64,
) -> anyhow::Result<()> {
    use crate::report::{median, percentile};
    use crate::workload::{Workload, closed_loop};
    let workloads = [Workload::Read, Workload::AccessLog];
    let mut slices: Vec<Vec<crate::workload::Slice>> = vec![Vec::new(); workloads.len()];
    for round in 0..rounds {
        for (i, w) in workloads.iter().enumerate() {
            let s = closed_loop(target, *w, clients, seconds, max).await;
            writeln!(
                out,
                "# round {round} {}: {:.0} rps ({} errors)",
                w.name(),
                s.rps,
                s.errors
            )?;
            slices[i].push(s);
        }
    }
    writeln!(out, "workload rps p50_ms p99_ms errors")?;
    for (i, w) in workloads.iter().enumerate() {
        let rps = median(slices[i].iter().map(|s| s.rps).collect());
        let p = |q: f64| {
            median(
                slices[i]
                    .iter()
                    .map(|s| {
                        let mut l = s.latencies_us.clone();
                        l.sort_unstable();
                        percentile(&l, q)
                    })
                    .collect(),
            )
        };
        let errors: u64 = slices[i].iter().map(|s| s.errors).sum();
        writeln!(
            out,
            "{} {rps:.0} {:.2} {:.2} {errors}",
            w.name(),
            p(0.50),
            p(0.99)
        )?;
    }
    Ok(())
}
