//! Policy evaluation per request: the route permission, the per-patient
//! decision, and the organization's PHI MFA rule.

use std::hint::black_box;

use carapace_auth::policy::{
    PatientRelation, Permission, authorize, authorize_patient, require_phi_mfa,
};
use carapace_auth::{Principal, Role, RoleSet};
use carapace_tenancy::{ClinicianScope, OrgId, PhiMfa, SubjectId};
use criterion::{Criterion, criterion_group, criterion_main};

fn policy(c: &mut Criterion) {
    let clinician = Principal::new(
        SubjectId::parse("clinician-ada").unwrap_or_else(|e| panic!("{e}")),
        OrgId::generate(),
        RoleSet::of(&[Role::Clinician]),
    );
    let related = PatientRelation {
        care_team: true,
        ..PatientRelation::default()
    };
    c.bench_function(
        "policy: route permission + patient decision + PHI MFA rule",
        |b| {
            b.iter(|| {
                let p = black_box(&clinician);
                (
                    authorize(p, Permission::PatientRead),
                    authorize_patient(
                        p,
                        Permission::PatientRead,
                        black_box(related),
                        ClinicianScope::CareTeam,
                    ),
                    require_phi_mfa(p, PhiMfa::Admin),
                )
            })
        },
    );
}

criterion_group!(benches, policy);
criterion_main!(benches);
