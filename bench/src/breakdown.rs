//! `--breakdown`: where the database's capacity goes. Per slice, each
//! statement's calls per request and share of database time
//! (`pg_stat_statements`), the WAL records, writes and flushes per request
//! (`pg_stat_wal`) and the checkpoints (`pg_stat_bgwriter`); with
//! `--perf-dir`, a `perf` profile of the server during its slices.
//!
//! `pg_stat_statements` must be in `shared_preload_libraries`, and its
//! reset clears the whole cluster's statistics: run it against a private
//! instance (`bench/private-pg.sh` starts one), not a shared one.
#![expect(clippy::as_conversions, reason = "per-request figures: counts as f64")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};
use sea_orm::{ConnectionTrait as _, DatabaseConnection, DbBackend, QueryResult, Statement};

/// Statements printed per slice, most database time first.
const TOP: usize = 14;

/// A superuser connection where `pg_stat_statements` is installed.
pub(crate) struct Breakdown {
    conn: DatabaseConnection,
}

/// Cluster-wide counters at the start of a slice.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Counters {
    wal_records: f64,
    wal_bytes: f64,
    wal_write: f64,
    wal_sync: f64,
    wal_sync_ms: f64,
    checkpoints: f64,
    buffers_checkpoint: f64,
}

/// What a slice served, for the per-request figures.
pub(crate) struct Served<'a> {
    /// The database the slice used.
    pub(crate) datname: &'a str,
    /// e.g. `W1_read carapace`.
    pub(crate) label: &'a str,
    /// Requests (or pgbench transactions) in the slice.
    pub(crate) requests: u64,
}

impl Breakdown {
    /// Connects as the superuser (`admin_url`, the harness's database) and
    /// installs the extension; fails when it is not preloaded.
    pub(crate) async fn open(admin_url: &str) -> anyhow::Result<Self> {
        let conn = sea_orm::Database::connect(admin_url).await?;
        let preload = one(&conn, "SHOW shared_preload_libraries").await?;
        let libs: String = preload.try_get("", "shared_preload_libraries")?;
        if !libs.contains("pg_stat_statements") {
            bail!(
                "--breakdown needs pg_stat_statements in shared_preload_libraries \
                 (it is {libs:?}); bench/private-pg.sh runs the harness against a private instance"
            );
        }
        conn.execute_unprepared("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await?;
        Ok(Self { conn })
    }

    /// Clears the statement statistics; the counters to subtract later.
    pub(crate) async fn start(&self) -> anyhow::Result<Counters> {
        self.conn
            .execute_unprepared("SELECT pg_stat_statements_reset()")
            .await?;
        self.counters().await
    }

    async fn counters(&self) -> anyhow::Result<Counters> {
        let r = one(
            &self.conn,
            "SELECT w.wal_records::float8 AS wal_records, w.wal_bytes::float8 AS wal_bytes,
                    w.wal_write::float8 AS wal_write, w.wal_sync::float8 AS wal_sync, w.wal_sync_time::float8 AS wal_sync_ms,
                    (b.checkpoints_timed + b.checkpoints_req)::float8 AS checkpoints,
                    b.buffers_checkpoint::float8 AS buffers_checkpoint
             FROM pg_stat_wal w, pg_stat_bgwriter b",
        )
        .await?;
        Ok(Counters {
            wal_records: r.try_get("", "wal_records")?,
            wal_bytes: r.try_get("", "wal_bytes")?,
            wal_write: r.try_get("", "wal_write")?,
            wal_sync: r.try_get("", "wal_sync")?,
            wal_sync_ms: r.try_get("", "wal_sync_ms")?,
            checkpoints: r.try_get("", "checkpoints")?,
            buffers_checkpoint: r.try_get("", "buffers_checkpoint")?,
        })
    }

    /// Prints the slice's statements and counters per request.
    pub(crate) async fn finish(
        &self,
        out: &mut impl Write,
        before: Counters,
        served: &Served<'_>,
    ) -> anyhow::Result<()> {
        let after = self.counters().await?;
        let rows = self
            .conn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT s.calls::int8 AS calls, s.total_exec_time::float8 AS ms,
                        left(regexp_replace(s.query, '\\s+', ' ', 'g'), 160) AS query
                 FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
                 WHERE d.datname = $1
                   AND s.userid <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
                 ORDER BY s.total_exec_time DESC",
                [served.datname.into()],
            ))
            .await?;
        // Statements that differ only after their first 100 characters (the
        // multi-row audit INSERTs of group commit, one entry per row count)
        // are counted together.
        let mut stmts: Vec<(f64, f64, String, usize)> = Vec::with_capacity(rows.len());
        for r in &rows {
            let calls: i64 = r.try_get("", "calls")?;
            let ms: f64 = r.try_get("", "ms")?;
            let query: String = r.try_get("", "query")?;
            let key: String = query.chars().take(100).collect();
            match stmts.iter_mut().find(|s| s.2.starts_with(&key)) {
                Some(s) => {
                    s.0 += calls as f64;
                    s.1 += ms;
                    s.3 += 1;
                }
                None => stmts.push((calls as f64, ms, query, 1)),
            }
        }
        stmts.sort_by(|a, b| b.1.total_cmp(&a.1));
        let n = served.requests.max(1) as f64;
        let calls: f64 = stmts.iter().map(|s| s.0).sum();
        let ms: f64 = stmts.iter().map(|s| s.1).sum();
        writeln!(
            out,
            "# breakdown {}: {} requests, {:.2} statements/request, {:.3} ms database time/request; \
             per request: WAL {:.2} records {:.0} bytes {:.3} writes {:.3} flushes {:.3} ms flushing; \
             checkpoints {:.0} ({:.0} buffers)",
            served.label,
            served.requests,
            calls / n,
            ms / n,
            (after.wal_records - before.wal_records) / n,
            (after.wal_bytes - before.wal_bytes) / n,
            (after.wal_write - before.wal_write) / n,
            (after.wal_sync - before.wal_sync) / n,
            (after.wal_sync_ms - before.wal_sync_ms) / n,
            after.checkpoints - before.checkpoints,
            after.buffers_checkpoint - before.buffers_checkpoint,
        )?;
        writeln!(out, "#   calls/req share mean_ms variants statement")?;
        for (c, t, q, variants) in stmts.iter().take(TOP) {
            writeln!(
                out,
                "#   {:.3} {:.1}% {:.3} {variants} {q}",
                c / n,
                if ms > 0.0 { t / ms * 100.0 } else { 0.0 },
                if *c > 0.0 { t / c } else { 0.0 },
            )?;
        }
        Ok(())
    }
}

async fn one(conn: &DatabaseConnection, sql: &str) -> anyhow::Result<QueryResult> {
    conn.query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .with_context(|| format!("no row from {sql}"))
}

/// A `perf record` of the server during one slice.
pub(crate) struct Profile {
    child: Child,
    data: PathBuf,
}

/// Starts `perf record` on `pid` for `secs` seconds into `dir/<name>.data`.
pub(crate) fn profile(dir: &Path, name: &str, pid: u32, secs: u64) -> anyhow::Result<Profile> {
    std::fs::create_dir_all(dir)?;
    let data = dir.join(format!("server.{name}.data"));
    let child = Command::new("perf")
        .args(["record", "-q", "-e", "cpu-clock", "-F", "499", "-g", "-p"])
        .arg(pid.to_string())
        .arg("-o")
        .arg(&data)
        .args(["--", "sleep"])
        .arg(secs.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("running perf (linux-perf)")?;
    Ok(Profile { child, data })
}

impl Profile {
    /// Waits for the recording; prints the server's heaviest symbols (self
    /// time) and leaves the full report beside the data.
    pub(crate) fn finish(mut self, out: &mut impl Write, label: &str) -> anyhow::Result<()> {
        self.child.wait()?;
        let report = Command::new("perf")
            .args([
                "report",
                "--no-children",
                "--sort",
                "symbol",
                "--stdio",
                "-g",
                "none",
                "-i",
            ])
            .arg(&self.data)
            .output()
            .context("running perf report")?;
        let text = String::from_utf8_lossy(&report.stdout);
        std::fs::write(self.data.with_extension("txt"), text.as_bytes())?;
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .take(TOP)
        {
            let words: Vec<&str> = line.split_whitespace().filter(|w| *w != "-").collect();
            writeln!(out, "# perf {label} {}", words.join(" "))?;
        }
        Ok(())
    }
}
