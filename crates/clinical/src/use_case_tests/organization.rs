//! The organization's settings as an administrator changes them, and as
//! one would try to relax MFA for PHI quietly: without a reason, with a
//! reason smuggled onto another change, with the security trail down.

use carapace_audit::SecurityEventKind;
use carapace_auth::Role;
use carapace_tenancy::{OrgId, OrgSettings, PhiMfa};

use super::fakes::{FakeEvents, block_on, caller, lock, principal};
use super::stores::FakeOrgs;
use crate::ClinicalError;
use crate::organization::{OrgAdministration, SettingsInput};

fn input(phi_mfa: &str, reason: Option<&str>) -> SettingsInput {
    SettingsInput {
        clinician_scope: "care_team".into(),
        phi_mfa: phi_mfa.into(),
        phi_mfa_reason: reason.map(str::to_owned),
        calendar_detail: "minimal".into(),
        external_referrals: true,
        ai_baa: false,
    }
}

/// Changes `org`'s settings to `wanted` as its administrator, with
/// security events going to `events`.
fn change(
    orgs: &FakeOrgs,
    events: &FakeEvents,
    org: OrgId,
    wanted: &SettingsInput,
) -> Result<OrgSettings, ClinicalError> {
    let admin = principal("admin", org, &[Role::Admin]);
    let administration = OrgAdministration { orgs, events };
    block_on(administration.change_settings(&caller(&admin, OrgSettings::default()), wanted))
}

fn stored(orgs: &FakeOrgs, org: OrgId) -> Option<OrgSettings> {
    lock(&orgs.orgs).get(&org).copied()
}

fn kinds(events: &FakeEvents) -> Vec<SecurityEventKind> {
    lock(&events.events).iter().map(|e| e.kind).collect()
}

fn refused_fields(result: Result<OrgSettings, ClinicalError>) -> Vec<String> {
    match result {
        Err(ClinicalError::Invalid(fields)) => fields.into_iter().map(|f| f.field).collect(),
        other => panic!("not refused: {other:?}"),
    }
}

#[test]
fn a_relaxation_is_recorded_before_it_takes_effect_and_the_change_after() {
    let (orgs, events) = (FakeOrgs::default(), FakeEvents::default());
    let org = orgs.add(OrgSettings::default());
    let reason = "front desk tablets cannot run an authenticator";
    let now = change(&orgs, &events, org, &input("admin", Some(reason)))
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(now.phi_mfa, PhiMfa::Admin);
    assert_eq!(stored(&orgs, org), Some(now));
    assert_eq!(
        kinds(&events),
        [
            SecurityEventKind::PhiMfaRelaxed,
            SecurityEventKind::OrgSettingsChanged
        ]
    );
    assert!(lock(&events.events)[0].detail.ends_with(reason));
}

#[test]
fn a_relaxation_without_a_good_reason_changes_and_records_nothing() {
    let (orgs, events) = (FakeOrgs::default(), FakeEvents::default());
    let org = orgs.add(OrgSettings::default());
    let long = "x".repeat(501);
    for reason in [
        None,
        Some("   short  "),
        Some("ten chars\u{0}!!"),
        Some(long.as_str()),
    ] {
        let refused = change(&orgs, &events, org, &input("admin", reason));
        assert_eq!(refused_fields(refused), ["phi_mfa_reason"], "{reason:?}");
    }
    // A reason riding on a change that relaxes nothing is refused too.
    let smuggled = change(
        &orgs,
        &events,
        org,
        &input("all_staff", Some("just because, really")),
    );
    assert_eq!(refused_fields(smuggled), ["phi_mfa_reason"]);
    assert_eq!(stored(&orgs, org), Some(OrgSettings::default()));
    assert!(kinds(&events).is_empty());
}

#[test]
fn with_the_security_trail_down_nothing_is_relaxed() {
    let orgs = FakeOrgs::default();
    let events = FakeEvents {
        fail: true,
        ..FakeEvents::default()
    };
    let org = orgs.add(OrgSettings::default());
    let failed = change(
        &orgs,
        &events,
        org,
        &input("admin", Some("a reason long enough")),
    );
    assert!(matches!(failed, Err(ClinicalError::Audit(_))), "{failed:?}");
    assert_eq!(stored(&orgs, org), Some(OrgSettings::default()));
}

#[test]
fn names_are_taken_only_exactly_as_the_api_spells_them() {
    let (orgs, events) = (FakeOrgs::default(), FakeEvents::default());
    let org = orgs.add(OrgSettings::default());
    let wanted = SettingsInput {
        clinician_scope: "Organization".into(),
        phi_mfa: "all_staff ".into(),
        calendar_detail: "initials\u{0}".into(),
        ..input("all_staff", None)
    };
    assert_eq!(
        refused_fields(change(&orgs, &events, org, &wanted)),
        ["clinician_scope", "phi_mfa", "calendar_detail"]
    );
    // Another organization's administrator changes their own only; one
    // with no organization on record changes nothing.
    let nowhere = change(&orgs, &events, OrgId::generate(), &input("all_staff", None));
    assert!(
        matches!(nowhere, Err(ClinicalError::NotFound)),
        "{nowhere:?}"
    );
    assert_eq!(stored(&orgs, org), Some(OrgSettings::default()));
    assert!(kinds(&events).is_empty());
}
