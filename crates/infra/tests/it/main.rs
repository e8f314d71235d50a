//! Integration tests of the storage adapters against real databases.

mod accounts;
mod appointments;
mod archive;
mod audit;
mod limits;
mod mail;
mod migrations;
mod oidc;
mod outbound;
mod partitions;
mod patients;
mod phi;
mod posture;
mod rls;
mod speech;
mod support;
mod witness;
