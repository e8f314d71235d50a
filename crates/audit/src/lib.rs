//! Audit trail of PHI access.
//!
//! This crate will own audit event types, the tamper-evident chain and the
//! `AuditSink` port through which every read or change of PHI is recorded in
//! the same transaction as the access (or the access fails). It holds no code
//! yet: the foundation slice does not audit, and the audit issue builds it.
//! It must never depend on a database driver, HTTP framework or logger sink.
