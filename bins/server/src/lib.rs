//! The `carapace` binary's library: command line, settings, HTTP wiring.
//!
//! Thin by design: it wires settings to adapters (`carapace-infra`) and
//! routes to domain ports and policies; it decides nothing itself.

pub mod cli;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod routes;
pub mod server;
pub mod settings;
pub mod state;
