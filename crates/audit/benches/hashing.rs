//! Audit event hashing: the canonical form, leaf and link of one event (the
//! chainer's work per event), and verifying one chain position.

use std::hint::black_box;

use carapace_audit::chain::{ChainEntry, ChainHead, ChainVerifier, leaf_hash, link_hash};
use carapace_audit::{Access, ActorKind, Origin, Outcome};
use carapace_tenancy::{OrgId, SubjectId, TenantContext};
use criterion::{Criterion, criterion_group, criterion_main};

fn hashing(c: &mut Criterion) {
    let org = OrgId::generate();
    let access = Access::new(
        TenantContext::new(
            org,
            SubjectId::parse("clinician-ada").unwrap_or_else(|e| panic!("{e}")),
        ),
        ActorKind::User,
        Origin {
            request_id: Some("0190f2a1b2c3d4e5f60718293a4b5c6d".into()),
            client_ip: Some("192.0.2.10".into()),
            user_agent: Some("clinic-app/4.2 (iOS 18)".into()),
            idempotency_key: None,
        },
    );
    let event = access
        .event(
            "patient.read",
            "patient",
            Some(uuid::Uuid::now_v7().to_string()),
            Outcome::Allowed,
        )
        .with_phi_fields(&["given_name", "family_name", "birth_date", "member_id"]);
    c.bench_function("audit: canonical form + leaf + link of one event", |b| {
        let prev = [7u8; 32];
        b.iter(|| {
            let bytes = black_box(&event).canonical();
            link_hash(&prev, &leaf_hash(&bytes))
        })
    });
    let bytes = event.canonical();
    let mut head = ChainHead::genesis(org);
    let (position, leaf, link) = head.append(&bytes);
    let entry = ChainEntry {
        position,
        event_id: event.id,
        leaf,
        link,
        event: Some(bytes),
        columns: Some(carapace_audit::chain::StoredColumns::of(&event)),
    };
    let key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
    c.bench_function("audit: verify one chain position", |b| {
        b.iter(|| {
            let mut v =
                ChainVerifier::new(org, None, Vec::new(), &key).unwrap_or_else(|e| panic!("{e}"));
            v.push(black_box(&entry))
        })
    });
}

criterion_group!(benches, hashing);
criterion_main!(benches);
