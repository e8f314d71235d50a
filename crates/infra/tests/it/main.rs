//! Integration tests of the storage adapters against real databases.

mod patients;
mod posture;
mod rls;
mod support;
