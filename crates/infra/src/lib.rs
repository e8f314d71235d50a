//! Adapters behind the domain ports.
//!
//! This crate implements the repository ports of `carapace-tenancy` and
//! `carapace-clinical` over SeaORM (PostgreSQL and SQLite), and the interim
//! dev-token verifier of `carapace-auth`. It owns every SQL statement in
//! Carapace and the database's tenant setting; it holds no policy and never
//! speaks HTTP to clients.

pub mod accounts;
pub mod alerts;
mod appointments;
pub mod assistant;
pub mod audit;
pub mod audit_partitions;
#[cfg(any(feature = "kms", feature = "s3"))]
mod aws;
pub mod backend;
mod calendar;
pub mod calls;
mod consultations;
pub mod db;
pub mod dev_token;
mod entity;
pub mod exports;
mod fields;
pub mod idempotency;
pub mod jwt_crypto;
pub mod keys;
pub mod kill_switch;
#[cfg(feature = "kms")]
pub mod kms;
pub mod local_tokens;
pub mod mail;
mod medications;
pub mod oidc;
mod organizations;
pub mod outbound;
mod patients;
pub mod purge;
pub mod rate_limit;
pub mod reminder_calls;
mod repo;
mod research;
#[cfg(feature = "s3")]
pub mod s3;
mod scope;
pub mod sealed;
pub mod service_keys;
pub mod sms;
pub mod speech;
mod subjects;
pub mod tokens;
mod trail;
mod verification;
pub mod voice;
pub mod voicemail;
pub mod witness;

pub use appointments::{Channels, ReminderDeliverer, ReminderReport, SeaAppointments};
pub use calendar::SeaCalendarFeeds;
pub use consultations::SeaConsultations;
pub use db::{Backend, Database, DbSettings, TlsMode};
pub use medications::SeaMedications;
pub use organizations::{SeaOrganizations, all_org_ids};
pub use patients::SeaPatients;
pub use research::SeaResearch;
pub use verification::SeaVerifications;
