//! The `carapace` binary's library: command line, settings, HTTP wiring.
//!
//! Thin by design: it wires settings to adapters (`carapace-infra`) and
//! routes to domain ports and policies; it decides nothing itself.

// The effective-configuration dump is one `serde_json::json!` of every setting.
#![recursion_limit = "256"]

pub mod cli;
pub mod fhir;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod settings;
pub mod state;
pub mod witness;
