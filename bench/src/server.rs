//! The server under test: a `carapace` child process, and what it used.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::Context as _;

/// Peak resident memory (KiB) and CPU seconds of a process.
pub(crate) fn process_stats(pid: u32) -> (u64, f64) {
    let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0);
    let ticks = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            // After the command: state is field 3, utime 14, stime 15.
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    (hwm, ticks as f64 / 100.0)
}

pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start_server(
    binary: &Path,
    dir: &Path,
    app_url: &str,
    issuer: &str,
    master_key_hex: &str,
    pool: usize,
    extra_env: &[(String, String)],
) -> anyhow::Result<(Server, String)> {
    let key_file = dir.join("master.key");
    std::fs::write(&key_file, master_key_hex)?;
    let mut child = Command::new(binary)
        .arg("serve")
        .env_clear()
        .env("CARAPACE_BIND", "127.0.0.1:0")
        .env("CARAPACE_DATABASE_URL", app_url)
        .env("CARAPACE_DATABASE_POOL_MAX", pool.to_string())
        .env("CARAPACE_DEV_TOKENS", "false")
        .env("CARAPACE_OIDC_ISSUER", issuer)
        .env("CARAPACE_OIDC_AUDIENCE", carapace_testkit::issuer::AUDIENCE)
        .env("CARAPACE_MASTER_KEY_FILE", &key_file)
        .env("CARAPACE_DATA_DIR", dir.join("data"))
        .env("CARAPACE_LOG_LEVEL", "warn")
        // The harness measures the PHI paths, not the limiter's refusals:
        // a few principals send thousands of requests per second.
        .env("CARAPACE_RATE_LIMIT_API_PER_MINUTE", "10000000")
        .env("CARAPACE_RATE_LIMIT_API_BURST", "100000")
        .env(
            "CARAPACE_CURSOR_SECRET",
            "bench-cursor-secret-0123456789abcdef",
        )
        .envs(extra_env.iter().map(|(k, v)| (k, v)))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {} (build it first)", binary.display()))?;
    let stdout = child.stdout.take().context("server stdout")?;
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first)?;
    let addr = first
        .split("http://")
        .nth(1)
        .map(str::trim)
        .context("the server printed no address")?
        .to_owned();
    Ok((Server(child), format!("http://{addr}")))
}
