//! Request limits: body size and rate limits.

use secrecy::{ExposeSecret as _, SecretString};

use super::checks::ConfigProblem;

/// Request limits: body size and the rate limits (counted in Redis when configured).
#[derive(Clone, Debug)]
pub struct LimitsSection {
    /// Largest accepted request body, in bytes.
    pub body_limit_bytes: usize,
    /// Redis (`redis://…`) holding rate-limit counters shared by every
    /// instance; unset: each instance counts in its own memory.
    pub redis_url: Option<SecretString>,
    /// Login, MFA verify, refresh and reset requests per client address per
    /// minute, sustained.
    pub auth_per_minute: u32,
    /// Burst allowed on top for the same routes.
    pub auth_burst: u32,
    /// AI requests per principal per minute.
    pub ai_per_minute: u32,
    /// Burst for AI requests.
    pub ai_burst: u32,
    /// Other API requests per principal per minute.
    pub api_per_minute: u32,
    /// Burst for other API requests.
    pub api_burst: u32,
    /// How long a FHIR bulk export's files are kept.
    pub export_ttl_secs: u64,
}

impl LimitsSection {
    /// The quota of each route class.
    pub fn quotas(&self) -> carapace_infra::rate_limit::Quotas {
        use carapace_auth::rate_limit::Quota;
        carapace_infra::rate_limit::Quotas {
            authentication: Quota::new(self.auth_per_minute, self.auth_burst),
            ai: Quota::new(self.ai_per_minute, self.ai_burst),
            api: Quota::new(self.api_per_minute, self.api_burst),
        }
    }

    /// Adds this section's problems to `p`.
    pub fn problems(&self, p: &mut Vec<ConfigProblem>) {
        for (key, value) in [
            ("CARAPACE_RATE_LIMIT_AUTH_PER_MINUTE", self.auth_per_minute),
            ("CARAPACE_RATE_LIMIT_AUTH_BURST", self.auth_burst),
            ("CARAPACE_RATE_LIMIT_AI_PER_MINUTE", self.ai_per_minute),
            ("CARAPACE_RATE_LIMIT_AI_BURST", self.ai_burst),
            ("CARAPACE_RATE_LIMIT_API_PER_MINUTE", self.api_per_minute),
            ("CARAPACE_RATE_LIMIT_API_BURST", self.api_burst),
        ] {
            if !(1..=10_000_000).contains(&value) {
                p.push(ConfigProblem::new(key, "must be between 1 and 10000000"));
            }
        }
        if let Some(url) = &self.redis_url
            && !(url.expose_secret().starts_with("redis://")
                || url.expose_secret().starts_with("rediss://"))
        {
            p.push(ConfigProblem::new(
                "CARAPACE_REDIS_URL",
                "must start with redis:// or rediss://",
            ));
        }
        if !(60..=604_800).contains(&self.export_ttl_secs) {
            p.push(ConfigProblem::new(
                "CARAPACE_EXPORT_TTL_SECS",
                "must be between 60 and 604800",
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.body_limit_bytes) {
            p.push(ConfigProblem::new(
                "CARAPACE_BODY_LIMIT_BYTES",
                "must be between 1024 and 16777216",
            ));
        }
    }
}
