//! Logs: JSON lines (or pretty, for a terminal) on stderr, levels per module
//! from `CARAPACE_LOG_LEVEL`, each line of a request carrying its request
//! id (the `request` span), and a redaction pass over every JSON line so
//! that fields named like secrets or PHI never reach the log, whatever code
//! logged them. PHI types already print as `[redacted]`; this catches plain
//! strings under a sensitive name, and masks identifiers (e-mail, phone,
//! dates, SSN, addresses, record numbers …,
//! [`carapace_phi_crypto::identifiers`]) inside any other text: a message,
//! an error string, a panic, an upstream error body.

use std::collections::HashSet;
use std::io::Write;
use std::sync::Arc;

use serde_json::Value;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Field names whose values are always replaced by `[redacted]`
/// (compared case-insensitively); `CARAPACE_LOG_REDACT_KEYS` adds more.
pub const REDACTED_KEYS: &[&str] = &[
    "password",
    "new_password",
    "current_password",
    "secret",
    "token",
    "access_token",
    "refresh_token",
    "id_token",
    "authorization",
    "cookie",
    "set_cookie",
    "api_key",
    "totp",
    "otp",
    "email",
    "phone",
    "given_name",
    "family_name",
    "name_dob",
    "birth_date",
    "member_id",
    "address",
    "ssn",
    "diagnosis",
    "notes",
    "transcript",
];

/// Panics are logged like everything else: through `tracing`, so their
/// messages (which may quote a value) pass the redacting writer, instead of
/// the default hook's raw line on stderr.
pub fn route_panics_through_logs() {
    std::panic::set_hook(Box::new(log_panic));
}

/// Logs a panic through `tracing` (the redacting writer).
pub fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(panic = %message, location = %location, "panicked");
    }
}

/// What replaces a redacted value.
pub const REDACTED: &str = "[redacted]";

/// Fields whose values are the log's own structure (times, levels, ids,
/// route templates), written as they are; every other text is masked.
const VERBATIM_KEYS: &[&str] = &[
    "timestamp",
    "level",
    "target",
    "request_id",
    "route",
    "method",
    "name",
    "org",
    "event",
    "alert",
    "code",
    "class",
    "security_event",
    "threadName",
    "threadId",
    "filename",
    "line_number",
];

/// The redaction rule: the default keys plus `extra` (comma-separated).
#[derive(Clone, Debug)]
pub struct Redaction(Arc<HashSet<String>>);

impl Redaction {
    /// The default keys plus `extra`.
    pub fn new(extra: &str) -> Self {
        let keys = REDACTED_KEYS
            .iter()
            .map(|k| (*k).to_owned())
            .chain(
                extra
                    .split(',')
                    .map(|k| k.trim().to_ascii_lowercase())
                    .filter(|k| !k.is_empty()),
            )
            .collect();
        Self(Arc::new(keys))
    }

    fn sensitive(&self, key: &str) -> bool {
        self.0.contains(&key.to_ascii_lowercase())
    }

    fn scrub(&self, value: &mut Value) {
        match value {
            Value::Object(members) => {
                for (key, v) in members.iter_mut() {
                    if self.sensitive(key) {
                        *v = Value::String(REDACTED.to_owned());
                    } else if VERBATIM_KEYS.contains(&key.as_str()) && !v.is_object() {
                        // The log's own structure.
                    } else {
                        self.scrub(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.scrub(v)),
            Value::String(text) => {
                let masked = carapace_phi_crypto::identifiers::mask(text);
                if masked != *text {
                    *text = masked;
                }
            }
            _ => {}
        }
    }

    /// `line` with every sensitive field's value replaced; `None` when it
    /// is not a JSON object (written as it is).
    pub fn line(&self, line: &[u8]) -> Option<Vec<u8>> {
        let mut value: Value = serde_json::from_slice(line.trim_ascii_end()).ok()?;
        if !value.is_object() {
            return None;
        }
        self.scrub(&mut value);
        let mut out = serde_json::to_vec(&value).ok()?;
        out.push(b'\n');
        Some(out)
    }
}

/// A [`MakeWriter`] whose writers redact each JSON line before passing it on.
#[derive(Clone, Debug)]
pub struct Redacting<M> {
    inner: M,
    rule: Redaction,
}

impl<M> Redacting<M> {
    /// Redacts what `inner`'s writers would write.
    pub fn new(inner: M, rule: Redaction) -> Self {
        Self { inner, rule }
    }
}

/// A writer that redacts each line it is given.
#[derive(Debug)]
pub struct RedactingWriter<W> {
    inner: W,
    rule: Redaction,
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // The formatter writes one whole event per call.
        match self.rule.line(buf) {
            Some(clean) => self.inner.write_all(&clean)?,
            None => self.inner.write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            inner: self.inner.make_writer(),
            rule: self.rule.clone(),
        }
    }
}

/// The JSON subscriber Carapace logs through: `filter`, the current span's
/// fields (the request id) on every line, redaction by `rule`, and spans
/// exported over OTLP when `traces` is given.
pub fn json_subscriber<W>(
    filter: EnvFilter,
    writer: W,
    rule: Redaction,
    traces: Option<Traces>,
) -> impl tracing::Subscriber + Send + Sync + 'static
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    use tracing_subscriber::layer::SubscriberExt as _;
    let lines = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(Redacting::new(writer, rule));
    tracing_subscriber::registry()
        .with(filter)
        .with(lines)
        .with(traces.map(Traces::layer))
}

/// OpenTelemetry trace export over OTLP/HTTP (feature `otel`; off unless
/// `CARAPACE_OTEL_ENDPOINT` is set). Only span names and the fields
/// Carapace puts on spans (request id, method, path without query) leave.
#[cfg(feature = "otel")]
pub struct Traces {
    provider: opentelemetry_sdk::trace::SdkTracerProvider,
}

#[cfg(feature = "otel")]
impl Traces {
    /// Exports to `endpoint` (`http(s)://collector:4318`; spans go to
    /// `/v1/traces`) in batches, in the background.
    pub fn to(endpoint: &str) -> anyhow::Result<Self> {
        use opentelemetry_otlp::WithExportConfig as _;
        // The exporter's HTTP client uses rustls with ring, like the rest.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build()?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name("carapace")
            .build();
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        Ok(Self { provider })
    }

    /// A handle that flushes and stops the exporter.
    pub fn handle(&self) -> TracesHandle {
        TracesHandle(self.provider.clone())
    }

    fn layer<S>(self) -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        use opentelemetry::trace::TracerProvider as _;
        tracing_opentelemetry::layer().with_tracer(self.provider.tracer("carapace"))
    }
}

/// Flushes and stops trace export.
#[cfg(feature = "otel")]
#[derive(Clone, Debug)]
pub struct TracesHandle(opentelemetry_sdk::trace::SdkTracerProvider);

#[cfg(feature = "otel")]
impl TracesHandle {
    /// Sends what is buffered now.
    pub fn flush(&self) {
        let _ = self.0.force_flush();
    }

    /// Sends what is buffered and stops.
    pub fn shutdown(&self) {
        let _ = self.0.shutdown();
    }
}

/// Whether trace export, when configured, started (readiness reports it).
static TRACE_EXPORT: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();

/// Records how setting up trace export went.
pub fn trace_export_started(result: Result<(), String>) {
    let _ = TRACE_EXPORT.set(result);
}

/// `None` when trace export is not configured; else whether it started.
pub fn trace_export_status() -> Option<Result<(), String>> {
    TRACE_EXPORT.get().cloned()
}

/// The process's trace exporter, once logging is set up with one.
#[cfg(feature = "otel")]
static EXPORTER: std::sync::OnceLock<TracesHandle> = std::sync::OnceLock::new();

/// Remembers `handle` so that [`flush_traces`] can reach it at exit.
#[cfg(feature = "otel")]
pub fn keep_for_exit(handle: TracesHandle) {
    let _ = EXPORTER.set(handle);
}

/// Sends any buffered spans and stops export (at shutdown); nothing when
/// export is off or not built in.
pub fn flush_traces() {
    #[cfg(feature = "otel")]
    if let Some(handle) = EXPORTER.get() {
        handle.shutdown();
    }
}

/// Trace export is not built in (feature `otel` off).
#[cfg(not(feature = "otel"))]
pub enum Traces {}

#[cfg(not(feature = "otel"))]
impl Traces {
    fn layer(self) -> tracing_subscriber::layer::Identity {
        match self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_fields_are_replaced_wherever_they_are() {
        let rule = Redaction::new("X-Custom");
        let line = br#"{"level":"INFO","fields":{"message":"m","email":"ann@example.org","Password":"hunter2"},"span":{"request_id":"r1","member_id":"M-1"},"list":[{"phone":"555"}],"x-custom":"v"}
"#;
        let out = String::from_utf8(rule.line(line).unwrap_or_default()).unwrap_or_default();
        for secret in ["ann@example.org", "hunter2", "M-1", "555", "\"v\""] {
            assert!(!out.contains(secret), "{secret} leaked: {out}");
        }
        assert!(out.contains(r#""request_id":"r1""#), "{out}");
        assert!(out.contains(r#""message":"m""#), "{out}");
        assert!(out.ends_with('\n'));
        assert_eq!(rule.line(b"not json\n"), None);
    }

    #[test]
    fn identifiers_inside_any_text_are_masked() {
        let rule = Redaction::new("");
        let line = br#"{"timestamp":"2026-12-06T12:00:00Z","level":"ERROR","target":"carapace_server","fields":{"message":"upstream said: no patient jane.roe@example.org born 02/03/1980, call 555-010-0100","cause":"storage failure: duplicate key (ssn)=(123-45-6789)"},"span":{"request_id":"0190d5a4-0000-7000-8000-000000000001"}}
"#;
        let out = String::from_utf8(rule.line(line).unwrap_or_default()).unwrap_or_default();
        for phi in [
            "jane.roe@example.org",
            "02/03/1980",
            "555-010-0100",
            "123-45-6789",
        ] {
            assert!(!out.contains(phi), "{phi} leaked: {out}");
        }
        for kept in [
            r#""timestamp":"2026-12-06T12:00:00Z""#,
            r#""request_id":"0190d5a4-0000-7000-8000-000000000001""#,
            "upstream said: no patient [EMAIL] born [DATE], call [PHONE]",
        ] {
            assert!(out.contains(kept), "{kept} missing: {out}");
        }
    }
}
