//! The workloads (read, write, search a patient) and the loops that drive
//! them over HTTP: closed (as fast as the clients can) and open (a fixed
//! rate).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::cpu::{Reading, Spent};
use crate::seed::Seeded;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Workload {
    Read,
    Write,
    Search,
    /// `GET /api/v1/patients/{id}/access-log` (`--audit-events` runs only).
    AccessLog,
}

impl Workload {
    pub(crate) const ALL: [Workload; 3] = [Workload::Read, Workload::Write, Workload::Search];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Read => "W1_read",
            Self::Write => "W2_write",
            Self::Search => "W3_search",
            Self::AccessLog => "access_log",
        }
    }

    /// Carapace's own SQL for the workload (pgbench, as the server's role).
    pub(crate) fn script(self) -> &'static str {
        match self {
            Self::Read => include_str!("../sql/w1_read.sql"),
            Self::Write => include_str!("../sql/w2_write.sql"),
            Self::Search => include_str!("../sql/w3_search.sql"),
            // No pgbench counterpart: `--audit-events` runs measure it alone.
            Self::AccessLog => "",
        }
    }
}

pub(crate) struct Target {
    pub(crate) base: String,
    pub(crate) http: reqwest::Client,
    pub(crate) tokens: Vec<String>,
    /// Compliance officers' tokens (the access log), one per organization.
    pub(crate) audit_tokens: Vec<String>,
    pub(crate) patients: Vec<Seeded>,
}

/// What one slice measured.
#[derive(Clone, Debug, Default)]
pub(crate) struct Slice {
    pub(crate) rps: f64,
    pub(crate) latencies_us: Vec<u64>,
    pub(crate) errors: u64,
    pub(crate) requests: u64,
    /// CPU seconds the server spent during the slice.
    pub(crate) server_cpu_s: f64,
    /// The machine's and the load generator's CPU during the slice.
    pub(crate) cpu: Spent,
}

/// A cheap deterministic spread of request numbers over the seeded data.
fn pick(n: u64, len: usize) -> usize {
    (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 17) as usize % len.max(1)
}

async fn request(t: &Target, w: Workload, n: u64) -> bool {
    let p = &t.patients[pick(n, t.patients.len())];
    let token = &t.tokens[p.org];
    let sent = match w {
        Workload::Read => {
            t.http
                .get(format!("{}/api/v1/patients/{}", t.base, p.id))
                .bearer_auth(token)
                .send()
                .await
        }
        Workload::Search => {
            t.http
                .get(format!(
                    "{}/api/v1/patients?member_id={}",
                    t.base, p.member_id
                ))
                .bearer_auth(token)
                .send()
                .await
        }
        Workload::AccessLog => {
            t.http
                .get(format!("{}/api/v1/patients/{}/access-log", t.base, p.id))
                .bearer_auth(&t.audit_tokens[p.org])
                .send()
                .await
        }
        Workload::Write => {
            t.http
                .post(format!("{}/api/v1/patients", t.base))
                .bearer_auth(token)
                .json(&serde_json::json!({
                    "given_name": "Bench", "family_name": format!("Write{n}"),
                    "birth_date": "1980-02-03", "member_id": format!("W-{n}"),
                }))
                .send()
                .await
        }
    };
    match sent {
        Ok(r) if r.status().is_success() => r.bytes().await.is_ok(),
        _ => false,
    }
}

/// Closed loop: `clients` tasks as fast as they can for `secs`.
pub(crate) async fn closed_loop(
    t: &Arc<Target>,
    w: Workload,
    clients: usize,
    secs: u64,
    max: u64,
) -> Slice {
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let cpu = Reading::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (t, stop, issued) = (t.clone(), stop.clone(), issued.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = 0;
                while !stop.load(Ordering::Relaxed) {
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    if n >= max {
                        break;
                    }
                    let begin = Instant::now();
                    if request(&t, w, n).await {
                        lat.push(begin.elapsed().as_micros() as u64);
                    } else {
                        errors += 1;
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut slice = Slice {
        cpu: cpu.spent_here(),
        ..Slice::default()
    };
    for task in tasks {
        if let Ok((lat, errors)) = task.await {
            slice.latencies_us.extend(lat);
            slice.errors += errors;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    slice.requests = slice.latencies_us.len() as u64 + slice.errors;
    slice.rps = slice.latencies_us.len() as f64 / elapsed;
    slice.latencies_us.sort_unstable();
    slice
}

/// Open loop: one request every `1/rate` s for `secs`, whatever the answers.
pub(crate) async fn fixed_rate(t: &Arc<Target>, rate: u64, secs: u64) -> Slice {
    let total = rate * secs;
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for n in 0..total {
        tokio::time::sleep_until(start + gap * n as u32).await;
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let begin = Instant::now();
            let ok = request(&t, Workload::Read, n).await;
            (ok, begin.elapsed().as_micros() as u64)
        }));
    }
    let mut slice = Slice::default();
    for task in tasks {
        match task.await {
            Ok((true, us)) => slice.latencies_us.push(us),
            _ => slice.errors += 1,
        }
    }
    slice.requests = total;
    slice.rps = slice.latencies_us.len() as f64 / secs as f64;
    slice.latencies_us.sort_unstable();
    slice
}
