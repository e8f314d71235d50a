//! The clinical domain: patients and their care relationships, and
//! appointments with their reminders, medications and side
//! effects, consents and referrals, and
//! prior-authorization verification tasks and the calls Carapace places
//! for them ([`telephony`]).
//!
//! This crate owns the domain types, their validation rules and the
//! repository ports. Every repository method takes a
//! [`carapace_tenancy::TenantContext`]; PHI fields are [`carapace_phi_crypto::Phi`].
//! The use cases that decide (patient access in [`access`], record sharing,
//! care-team assignment, appointment listings and free slots, bulk
//! exports, the organization's settings) live here
//! too, over those ports, so every surface (REST today, FHIR or webhooks
//! later) calls the same decision and maps the same typed answer.
//!
//! It never depends on a database driver or an HTTP framework.

pub mod access;
pub mod appointment;
pub mod assistant;
pub mod care_team;
pub mod consultation;
mod error;
pub mod export;
mod input;
pub mod medication;
pub mod organization;
pub mod patient;
pub mod research;
pub mod small_cells;
pub mod speech;
pub mod telephony;
pub mod verification;

pub use error::{ClinicalError, FieldError};

#[cfg(test)]
mod use_case_tests;
