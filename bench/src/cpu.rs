//! Where the machine's CPU goes during a slice: the whole machine's busy
//! time (`/proc/stat`), the load generator's own (this process, or the
//! pgbench it waited for), and the server's; the rest is PostgreSQL (and
//! whatever else ran). Both sides share the same two cores, so CPU per
//! request is what a ratio to the floor is made of.
#![expect(clippy::as_conversions, reason = "per-request figures: counts as f64")]

use std::fmt;

use crate::server::process_stats;

/// CPU seconds, read at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Reading {
    machine_s: f64,
    harness_s: f64,
    children_s: f64,
}

impl Reading {
    pub(crate) fn now() -> Self {
        let (_, harness_s) = process_stats(std::process::id());
        Self {
            machine_s: machine_busy_s(),
            harness_s,
            children_s: children_s(),
        }
    }

    /// What was spent since `self`, the load generator being this process.
    pub(crate) fn spent_here(&self) -> Spent {
        let now = Self::now();
        Spent {
            machine_s: now.machine_s - self.machine_s,
            client_s: now.harness_s - self.harness_s,
        }
    }

    /// What was spent since `self`, the load generator being a child this
    /// process waited for (pgbench).
    pub(crate) fn spent_by_child(&self) -> Spent {
        let now = Self::now();
        Spent {
            machine_s: now.machine_s - self.machine_s,
            client_s: now.children_s - self.children_s,
        }
    }
}

/// CPU seconds spent during a slice.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Spent {
    /// Every core's busy time.
    pub(crate) machine_s: f64,
    /// The load generator's.
    pub(crate) client_s: f64,
}

impl Spent {
    pub(crate) fn add(&mut self, other: Spent) {
        self.machine_s += other.machine_s;
        self.client_s += other.client_s;
    }
}

/// Milliseconds per request of a slice's CPU: the machine's, the load
/// generator's, the server's (none for pgbench) and the rest (PostgreSQL).
pub(crate) struct PerRequest {
    pub(crate) machine: f64,
    pub(crate) client: f64,
    pub(crate) server: f64,
}

impl PerRequest {
    pub(crate) fn of(spent: Spent, server_s: f64, requests: u64) -> Self {
        let per = |s: f64| {
            if requests > 0 {
                s * 1000.0 / requests as f64
            } else {
                0.0
            }
        };
        Self {
            machine: per(spent.machine_s),
            client: per(spent.client_s),
            server: per(server_s),
        }
    }
}

impl fmt::Display for PerRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rest = self.machine - self.client - self.server;
        write!(
            f,
            "{:.3} {:.3} {:.3} {:.3}",
            self.machine, self.client, self.server, rest
        )
    }
}

/// Busy seconds of all cores since boot: `/proc/stat`'s first line, less
/// idle and iowait.
fn machine_busy_s() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return 0.0;
    };
    let Some(cpu) = stat.lines().next() else {
        return 0.0;
    };
    let ticks: Vec<u64> = cpu
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is in user).
    let busy: u64 = ticks
        .iter()
        .take(8)
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4 && *i != 7)
        .map(|(_, t)| t)
        .sum();
    busy as f64 / 100.0
}

/// CPU seconds of this process's children that it has waited for.
fn children_s() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            // After the command: cutime is field 16, cstime 17.
            Some(f.get(13)?.parse::<u64>().ok()? + f.get(14)?.parse::<u64>().ok()?)
        })
        .map_or(0.0, |t| t as f64 / 100.0)
}
