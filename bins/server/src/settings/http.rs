//! The HTTP edge: listen address, CORS origins, trusted proxies,
//! per-organization hosts and the shutdown drain.

use std::net::SocketAddr;

use anyhow::Context as _;

use super::checks::ConfigProblem;

/// The HTTP edge: where the server listens, which browsers and proxies it believes, per-organization hosts, and shutdown.
#[derive(Clone, Debug)]
pub struct HttpSection {
    /// Listen address.
    pub bind: String,
    /// Browser origins allowed to call the API (comma-separated exact
    /// `scheme://host[:port]`); empty: none.
    pub cors_origins: String,
    /// Proxies (addresses or CIDR networks, comma-separated) whose
    /// `X-Forwarded-For` is believed; from anyone else it is ignored.
    pub trusted_proxies: String,
    /// Base domain of per-organization hosts (`<slug>.<base_domain>`): when
    /// set, a request to such a host must carry a credential of that org.
    pub base_domain: Option<String>,
    /// Seconds in-flight requests get to finish on shutdown.
    pub shutdown_timeout_secs: u64,
    /// HTTP worker threads (0: half the CPUs, at least one).
    pub workers: u32,
}

impl HttpSection {
    /// The listen address (validated by [`Self::problems`]).
    pub fn bind_addr(&self) -> anyhow::Result<SocketAddr> {
        self.bind
            .parse()
            .with_context(|| format!("CARAPACE_BIND {:?} is not host:port", self.bind))
    }

    /// How many HTTP worker threads to run on `cpus` CPUs: as configured,
    /// or half of them (at least one). Each worker has its own event loop;
    /// the database's shared transactions run on the main runtime, whose
    /// threads need the other half (docs/adr/0016-round-trips-and-runtimes.md).
    pub fn worker_threads(&self, cpus: usize) -> usize {
        match self.workers {
            0 => (cpus / 2).max(1),
            n => usize::try_from(n).unwrap_or(1),
        }
    }

    /// The CORS origins, as listed.
    pub fn cors_origins(&self) -> Vec<String> {
        self.cors_origins
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The trusted proxies (checked by [`Self::problems`]; empty if invalid).
    pub fn trusted_proxies(&self) -> carapace_auth::rate_limit::TrustedProxies {
        carapace_auth::rate_limit::TrustedProxies::parse(&self.trusted_proxies).unwrap_or_default()
    }

    /// Adds this section's problems to `p`.
    pub fn problems(&self, p: &mut Vec<ConfigProblem>) {
        if self.bind.parse::<SocketAddr>().is_err() {
            p.push(ConfigProblem::new(
                "CARAPACE_BIND",
                format!("{:?} is not an address like 127.0.0.1:8080", self.bind),
            ));
        }
        for origin in self.cors_origins() {
            if !is_origin(&origin) {
                p.push(ConfigProblem::new(
                    "CARAPACE_CORS_ORIGINS",
                    format!("{origin:?} is not an origin like https://app.example.org (scheme, host, optional port; no path)"),
                ));
            }
        }
        if let Err(e) = carapace_auth::rate_limit::TrustedProxies::parse(&self.trusted_proxies) {
            p.push(ConfigProblem::new(
                "CARAPACE_TRUSTED_PROXIES",
                e.to_string(),
            ));
        }
        if self.workers > 256 {
            p.push(ConfigProblem::new(
                "CARAPACE_HTTP_WORKERS",
                "must be between 0 (half the CPUs) and 256",
            ));
        }
        if !(1..=3600).contains(&self.shutdown_timeout_secs) {
            p.push(ConfigProblem::new(
                "CARAPACE_SHUTDOWN_TIMEOUT_SECS",
                "must be between 1 and 3600 seconds",
            ));
        }
        if let Some(base) = &self.base_domain {
            let ok = base.len() <= 200
                && base.split('.').count() >= 2
                && base.split('.').all(|l| {
                    !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !ok {
                p.push(ConfigProblem::new(
                    "CARAPACE_BASE_DOMAIN",
                    "must be a domain like clinics.example.org",
                ));
            }
        }
    }
}

/// Whether `s` is exactly an origin: `http(s)://host[:port]`, nothing more.
fn is_origin(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https")
            && u.host_str().is_some()
            && u.username().is_empty()
            && u.password().is_none()
            && u.query().is_none()
            && u.fragment().is_none()
            && !s.contains('*')
            && u.origin().ascii_serialization() == s
    })
}
