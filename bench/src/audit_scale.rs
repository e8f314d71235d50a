//! Audit events at scale (issue #17, `--audit-events N[,M…]`): for each
//! size, a database whose audit trail is filled with that many synthetic
//! events before the run, generated in SQL; the chainer's cost is
//! measured on the seeded patients' events chained on top of them, and W1
//! and the access log are run against one server per database, the sizes
//! alternating slice by slice.
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
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use carapace_infra::audit::AuditChainer;
use carapace_infra::{Database, DbSettings};
use carapace_tenancy::OrgId;
use carapace_testkit::PgTestDb;
use carapace_testkit::issuer::TestIssuer;
use sea_orm::{ConnectionTrait as _, DatabaseConnection, DbBackend, Statement};

use crate::report::{median, percentile, ratio};
use crate::seed::{Seeded, fresh_seeded};
use crate::server::start_server;
use crate::workload::{Slice, Target, Workload, closed_loop};

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

/// What chaining pending events cost.
#[derive(Clone, Copy, Debug, Default)]
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

impl ChainerCost {
    fn add(&mut self, other: Self) {
        self.events += other.events;
        self.wall_s += other.wall_s;
        self.client_cpu_s += other.client_cpu_s;
        self.db_cpu_s += other.db_cpu_s;
    }

    /// CPU seconds (client and database) per 1,000 events chained.
    fn per_1000(&self) -> f64 {
        if self.events == 0 {
            return 0.0;
        }
        (self.client_cpu_s + self.db_cpu_s) / self.events as f64 * 1000.0
    }
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

/// Chains every pending event of one organization (its seeded patients'
/// creations) in this process, as the server's chainer does, and measures
/// it.
async fn measure_org(
    owner: &DatabaseConnection,
    chainer: &AuditChainer,
    org: OrgId,
) -> anyhow::Result<ChainerCost> {
    let before = backend_cpu(owner).await?;
    let (_, self_before) = crate::server::process_stats(std::process::id());
    let started = Instant::now();
    let events = chainer.chain_org_to_completion(org).await?;
    let wall_s = started.elapsed().as_secs_f64();
    let (_, self_after) = crate::server::process_stats(std::process::id());
    let after = backend_cpu(owner).await?;
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

/// What an audit-at-scale run needs from the command line.
pub struct Scale<'a> {
    /// The table sizes compared (events generated before the run).
    pub sizes: &'a [u64],
    /// Organizations and patients per organization, seeded in each.
    pub orgs: usize,
    pub patients: usize,
    pub clients: usize,
    pub seconds: u64,
    pub rounds: usize,
    pub max_requests: u64,
    /// Stop after the chainer's measurement.
    pub chainer_only: bool,
    pub server: &'a Path,
    pub server_env: &'a [(String, String)],
}

/// One table size: its database, seeded and filled.
struct Sized {
    events: u64,
    pg: PgTestDb,
    owner: DatabaseConnection,
    orgs: Vec<OrgId>,
    patients: Vec<Seeded>,
}

/// Runs the comparison: one fresh database per size, each seeded with the
/// same organizations and patients and filled with its number of events;
/// then, alternating between the sizes so that the machine's drift falls
/// on all alike, the chainer (organization by organization, the order
/// reversed each time) and W1 and the access log (one server per
/// database, 32 clients, the order reversed each round). Prints each
/// size's medians and, for every size after the first, its ratio to the
/// first: of the medians, and the median of the rounds' paired ratios.
pub async fn run(
    out: &mut impl Write,
    s: &Scale<'_>,
    key: &[u8; 32],
    key_hex: &str,
) -> anyhow::Result<()> {
    let mut sized = Vec::new();
    for &events in s.sizes {
        let (pg, orgs, patients, seeded) = fresh_seeded(key, s.orgs, s.patients, s.clients).await?;
        let owner = sea_orm::Database::connect(pg.owner_url.clone()).await?;
        let generated = prefill(&owner, events).await?;
        writeln!(
            out,
            "# {events} events: seeded {} orgs x {} patients in {seeded:.1} s, generated the events in {generated:.1} s",
            s.orgs, s.patients,
        )?;
        sized.push(Sized {
            events,
            pg,
            owner,
            orgs,
            patients,
        });
    }

    let mut costs = vec![ChainerCost::default(); sized.len()];
    let mut chainers = Vec::new();
    let mut pools = Vec::new();
    for z in &sized {
        let mut settings = DbSettings::new(z.pg.app_url.clone().into());
        settings.pool_max = 4;
        let db = Database::connect(&settings).await?;
        let signing = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        chainers.push(AuditChainer::new(
            db.clone(),
            signing,
            Duration::from_secs(60),
        ));
        pools.push(db);
    }
    for o in 0..s.orgs {
        for i in alternating(sized.len(), o) {
            let z = &sized[i];
            let cost = measure_org(&z.owner, &chainers[i], z.orgs[o]).await?;
            costs[i].add(cost);
        }
    }
    drop(chainers);
    for db in pools {
        db.close().await;
    }
    writeln!(
        out,
        "chainer database events_in_table chainer_events wall_s client_cpu_s db_cpu_s cpu_s_per_1000_events ratio_to_first"
    )?;
    for (i, (z, c)) in sized.iter().zip(&costs).enumerate() {
        writeln!(
            out,
            "chainer {} {} {} {:.2} {:.2} {:.2} {:.4} {:.2}",
            i + 1,
            z.events,
            c.events,
            c.wall_s,
            c.client_cpu_s,
            c.db_cpu_s,
            c.per_1000(),
            ratio(c.per_1000(), costs[0].per_1000()),
        )?;
    }
    if s.chainer_only {
        return Ok(());
    }

    let work = crate::tempdir()?;
    let issuer = TestIssuer::start();
    let mut servers = Vec::new();
    let mut targets = Vec::new();
    for (i, z) in sized.iter().enumerate() {
        let dir = work.path().join(i.to_string());
        std::fs::create_dir_all(&dir)?;
        let (server, base) = start_server(
            s.server,
            &dir,
            &z.pg.app_url,
            &issuer.url,
            key_hex,
            s.clients,
            s.server_env,
        )?;
        servers.push(server);
        let target = Arc::new(Target {
            base,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(s.clients)
                .timeout(Duration::from_secs(30))
                .build()?,
            tokens: crate::tokens(&issuer, &z.orgs, "clinician", false),
            audit_tokens: crate::tokens(&issuer, &z.orgs, "compliance", true),
            patients: z.patients.clone(),
        });
        // Warm-up: connections, JWKS, data keys, each partition's plan.
        for w in WORKLOADS {
            let _ = closed_loop(&target, w, s.clients, 2, s.max_requests).await;
        }
        targets.push(target);
    }

    // slices[size][workload][round]
    let mut slices = vec![vec![Vec::new(); WORKLOADS.len()]; sized.len()];
    for round in 0..s.rounds {
        for (w, workload) in WORKLOADS.iter().enumerate() {
            for i in alternating(sized.len(), round + w) {
                let slice =
                    closed_loop(&targets[i], *workload, s.clients, s.seconds, s.max_requests).await;
                writeln!(
                    out,
                    "# round {round} {} database {} ({} events): {:.0} rps, p99 {:.2} ms ({} errors)",
                    workload.name(),
                    i + 1,
                    sized[i].events,
                    slice.rps,
                    percentile(&slice.latencies_us, 0.99),
                    slice.errors
                )?;
                slices[i][w].push(slice);
            }
        }
    }
    drop(servers);
    writeln!(
        out,
        "workload database events_in_table rps p50_ms p99_ms errors rps_to_first p99_to_first paired_rps_to_first paired_p99_to_first"
    )?;
    for (w, workload) in WORKLOADS.iter().enumerate() {
        let first = &slices[0][w];
        for (i, z) in sized.iter().enumerate() {
            let mine = &slices[i][w];
            let errors: u64 = mine.iter().map(|x| x.errors).sum();
            let paired = |f: fn(&Slice) -> f64| {
                median(
                    mine.iter()
                        .zip(first)
                        .map(|(a, b)| ratio(f(a), f(b)))
                        .collect(),
                )
            };
            writeln!(
                out,
                "{} {} {} {:.0} {:.2} {:.2} {errors} {:.2} {:.2} {:.2} {:.2}",
                workload.name(),
                i + 1,
                z.events,
                median_of(mine, rps),
                median_of(mine, p50),
                median_of(mine, p99),
                ratio(median_of(mine, rps), median_of(first, rps)),
                ratio(median_of(mine, p99), median_of(first, p99)),
                paired(rps),
                paired(p99),
            )?;
        }
    }
    for z in sized {
        z.owner.close().await?;
    }
    Ok(())
}

const WORKLOADS: [Workload; 2] = [Workload::Read, Workload::AccessLog];

/// The order of `n` sizes in turn `k`: forward, then backward, so that
/// neither always goes first.
fn alternating(n: usize, k: usize) -> Vec<usize> {
    if k.is_multiple_of(2) {
        (0..n).collect()
    } else {
        (0..n).rev().collect()
    }
}

fn rps(s: &Slice) -> f64 {
    s.rps
}

fn p50(s: &Slice) -> f64 {
    percentile(&s.latencies_us, 0.50)
}

fn p99(s: &Slice) -> f64 {
    percentile(&s.latencies_us, 0.99)
}

fn median_of(slices: &[Slice], f: fn(&Slice) -> f64) -> f64 {
    median(slices.iter().map(f).collect())
}
