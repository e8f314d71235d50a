//! Logs, traces and metrics.

use secrecy::SecretString;

use super::LogFormat;
use super::checks::{ConfigProblem, short_secret};

/// Logs, traces and metrics.
#[derive(Clone, Debug)]
pub struct TelemetrySection {
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (tracing `EnvFilter` syntax).
    pub log_level: String,
    /// Field names (comma-separated) redacted from every JSON log line, on
    /// top of the built-in list (passwords, tokens, PHI field names).
    pub log_redact_keys: String,
    /// OTLP/HTTP collector (`http(s)://host:4318`) to export traces to;
    /// needs the `otel` feature. Unset: no export.
    pub otel_endpoint: Option<String>,
    /// Bearer token that `GET /metrics` requires (at least 32 bytes);
    /// unset: no metrics route.
    pub metrics_token: Option<SecretString>,
    /// Requests slower than this many milliseconds are logged as warnings.
    pub slow_request_ms: u64,
}

impl TelemetrySection {
    /// Adds this section's problems to `p`.
    pub fn problems(&self, p: &mut Vec<ConfigProblem>) {
        if let Some(problem) = short_secret("CARAPACE_METRICS_TOKEN", self.metrics_token.as_ref()) {
            p.push(problem);
        }
        if let Some(endpoint) = &self.otel_endpoint {
            if !cfg!(feature = "otel") {
                p.push(ConfigProblem::new(
                    "CARAPACE_OTEL_ENDPOINT",
                    "this binary is built without trace export: rebuild with --features otel, or unset it",
                ));
            } else if !url::Url::parse(endpoint)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
            {
                p.push(ConfigProblem::new(
                    "CARAPACE_OTEL_ENDPOINT",
                    "must be an http(s) URL like http://collector:4318",
                ));
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            p.push(ConfigProblem::new(
                "CARAPACE_LOG_LEVEL",
                "is not a valid filter (e.g. info or carapace=debug,info)",
            ));
        }
    }
}
