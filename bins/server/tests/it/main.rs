//! The server, end to end: a real HTTP server on a random port over a real
//! database (SQLite always; PostgreSQL as the non-owner role when
//! `CARAPACE_TEST_PG_URL` is set).

mod alerts;
mod appointments;
mod assistant;
mod attack;
mod audit;
mod auth;
mod authorization;
mod backend_services;
mod bad_input;
mod cli;
mod console;
mod consultations;
mod faults;
mod fhir;
mod headers;
mod health;
mod isolation;
mod keys;
mod kill_switch;
mod limits;
mod medications;
mod metrics;
mod oidc;
#[cfg(feature = "otel")]
mod otel;
mod patients;
mod pgbouncer;
mod relationships;
mod reminder_calls;
mod retention;
mod service_keys;
mod speech;
mod support;
mod telephony;
mod users;
mod verification;
mod witness;
