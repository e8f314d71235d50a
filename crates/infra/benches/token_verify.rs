//! Verifying an issuer access token with a cached JWKS (what every API
//! request does first): RS256 and ES256, against a local issuer.

use std::hint::black_box;

use carapace_auth::issuer::{ClaimRules, IssuerFlavor};
use carapace_infra::oidc::{OidcSettings, OidcVerifier};
use carapace_infra::{Database, DbSettings, SeaOrganizations};
use carapace_tenancy::{NewOrganization, OrgName, OrgSlug, OrganizationRepository as _};
use carapace_testkit::issuer::{AUDIENCE, TestIssuer, TestKey};
use criterion::{Criterion, criterion_group, criterion_main};

fn verify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let (issuer, verifier, org) = rt.block_on(async {
        let db = Database::connect(&DbSettings::new(
            format!("sqlite://{}/bench.db", dir.path().display()).into(),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
        db.migrate().await.unwrap_or_else(|e| panic!("{e}"));
        let org = SeaOrganizations::new(db.clone())
            .create(NewOrganization {
                slug: OrgSlug::parse("bench").unwrap_or_else(|e| panic!("{e}")),
                name: OrgName::parse("Bench").unwrap_or_else(|e| panic!("{e}")),
            })
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let issuer = TestIssuer::start();
        let rules = ClaimRules {
            audience: AUDIENCE.into(),
            flavor: IssuerFlavor::Standard,
            org_claim: "org_id".into(),
            roles_claim: "roles".into(),
        };
        let verifier = OidcVerifier::new(
            OidcSettings::new(issuer.url.clone(), rules),
            SeaOrganizations::new(db),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        verifier.warm().await;
        (issuer, verifier, org.id)
    });
    for key in [TestKey::Rsa1, TestKey::Ec1] {
        let token = issuer.sign(key, &issuer.claims(&org.to_string(), &["clinician"]));
        // The organization lookup is cached after the first token.
        rt.block_on(verifier.verify(token.as_str()))
            .unwrap_or_else(|e| panic!("{e}"));
        c.bench_function(
            &format!("token: verify {:?} with a cached JWKS", key.alg()),
            |b| b.iter(|| rt.block_on(verifier.verify(black_box(token.as_str())))),
        );
    }
}

criterion_group!(benches, verify);
criterion_main!(benches);
