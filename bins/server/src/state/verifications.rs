//! Audit-chain verifications running on this instance (`GET
//! /api/v1/audit-chain`). A verification reads the organization's whole
//! chain, so each organization runs one at a time and the instance at most
//! [`MAX_RUNNING`]: one tenant asking again and again is refused (429)
//! without holding up another tenant's verification.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use carapace_tenancy::OrgId;

/// Verifications this instance runs at once, across organizations.
pub const MAX_RUNNING: usize = 2;

/// The organizations whose chain this instance is verifying.
#[derive(Debug, Default)]
pub struct Verifications {
    running: Mutex<HashSet<OrgId>>,
}

/// A verification under way; dropping it ends it.
#[derive(Debug)]
pub struct Running<'a> {
    of: &'a Verifications,
    org: OrgId,
}

impl Verifications {
    /// Starts a verification of `org`'s chain, or `None` when one of
    /// `org`'s is already running or the instance runs [`MAX_RUNNING`].
    pub fn start(&self, org: OrgId) -> Option<Running<'_>> {
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running.len() >= MAX_RUNNING || !running.insert(org) {
            return None;
        }
        Some(Running { of: self, org })
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.of
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.org);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_organization_verifying_does_not_hold_up_another() {
        let v = Verifications::default();
        let (a, b) = (OrgId::generate(), OrgId::generate());
        let running = v.start(a);
        assert!(running.is_some());
        assert!(v.start(a).is_none(), "a second of the same organization's");
        assert!(v.start(b).is_some(), "another organization's");
    }

    #[test]
    fn the_instance_runs_at_most_its_bound_and_an_ended_one_frees_its_place() {
        let v = Verifications::default();
        let orgs: Vec<OrgId> = (0..=MAX_RUNNING).map(|_| OrgId::generate()).collect();
        let held: Vec<Running<'_>> = orgs[..MAX_RUNNING]
            .iter()
            .filter_map(|o| v.start(*o))
            .collect();
        assert_eq!(held.len(), MAX_RUNNING);
        assert!(v.start(orgs[MAX_RUNNING]).is_none(), "over the bound");
        drop(held);
        assert!(
            v.start(orgs[0]).is_some(),
            "ended: its organization may again"
        );
        assert!(v.start(orgs[MAX_RUNNING]).is_some());
    }
}
