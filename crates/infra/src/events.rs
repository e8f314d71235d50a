//! The interim [`SecurityEventSink`]: structured log lines (no PHI). The
//! audit issue replaces it with the persisted, tamper-evident log.

use carapace_audit::{SecurityEvent, SecurityEventSink};

/// Writes security events to the log at `warn`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogSink;

impl SecurityEventSink for LogSink {
    fn emit(&self, event: SecurityEvent) {
        tracing::warn!(
            security_event = event.kind.as_str(),
            org = %event.org,
            subject = %event.subject,
            detail = %event.detail,
            "security event"
        );
    }
}
