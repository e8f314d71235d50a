use super::*;
use std::collections::BTreeMap;

use crate::chain::{ChainHead, Checkpoint, CheckpointKind, Hash};
use ed25519_dalek::SigningKey;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[7; 32])
}

fn t(secs: i64) -> OffsetDateTime {
    OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000) + time::Duration::seconds(secs)
}

/// A chain of `n` positions over `seed`ed events: its links by position.
fn links(org: OrgId, n: u64, seed: &str) -> BTreeMap<u64, Hash> {
    let mut head = ChainHead::genesis(org);
    (1..=n)
        .map(|i| {
            let (p, _, link) = head.append(format!("{seed}-{i}").as_bytes());
            (p, link)
        })
        .collect()
}

fn head(org: OrgId, links: &BTreeMap<u64, Hash>, position: u64) -> Checkpoint {
    Checkpoint::sign(
        &key(),
        org,
        CheckpointKind::Head,
        position,
        links[&position],
        t(i64::try_from(position).unwrap_or(i64::MAX)),
    )
}

fn object(cp: &Checkpoint) -> Witnessed {
    Witnessed::Object {
        name: object_name(cp),
        version: None,
        body: encode(cp),
    }
}

fn db(links: &BTreeMap<u64, Hash>, ends_at: u64, checkpoints: Vec<Checkpoint>) -> DatabaseSide {
    DatabaseSide {
        ends_at,
        starts_after: 0,
        links: links
            .iter()
            .filter(|(p, _)| **p <= ends_at)
            .map(|(p, l)| (*p, *l))
            .collect(),
        checkpoints,
    }
}

fn compare(org: OrgId, witness: &[Witnessed], db: &DatabaseSide) -> WitnessReport {
    WitnessView::read(org, witness, &key().verifying_key()).compare(
        db,
        t(100),
        time::Duration::seconds(60),
    )
}

#[test]
fn objects_are_named_by_org_position_and_kind_and_round_trip() {
    let org = OrgId::generate();
    let l = links(org, 3, "e");
    let cp = head(org, &l, 3);
    assert_eq!(
        object_name(&cp),
        format!("{org}/00000000000000000003-head.json")
    );
    assert_eq!(decode(&encode(&cp)), Some(cp.clone()));
    assert_eq!(decode(b"{}"), None);
    assert_eq!(position_in(&object_name(&cp)), Some(3));
    assert_eq!(position_in("x/3-head.json"), None);
    assert_eq!(etag(&cp).len(), 32);
    assert_ne!(etag(&cp), etag(&head(org, &l, 2)));
    let text = String::from_utf8_lossy(&encode(&cp)).into_owned();
    assert!(text.contains("\"format\":1") && text.contains(&hex(&l[&3])));
}

#[test]
fn an_intact_database_agrees_with_its_witness() {
    let org = OrgId::generate();
    let l = links(org, 30, "e");
    let cps: Vec<Checkpoint> = [10, 20, 30].map(|p| head(org, &l, p)).to_vec();
    let witness: Vec<Witnessed> = cps.iter().map(object).collect();
    let report = compare(org, &witness, &db(&l, 30, cps.clone()));
    assert_eq!(
        report,
        WitnessReport {
            findings: vec![],
            anchored: 30,
            matched: 3,
            unanchored: 0
        }
    );
    // The same object written twice (a retried write) is one checkpoint.
    let mut twice = witness.clone();
    twice.push(object(&cps[2]));
    assert_eq!(compare(org, &twice, &db(&l, 30, cps)).findings, vec![]);
}

#[test]
fn a_checkpoint_waiting_for_the_witness_is_fine_until_it_is_overdue() {
    let org = OrgId::generate();
    let l = links(org, 40, "e");
    let witnessed = [10, 20].map(|p| head(org, &l, p));
    let cps: Vec<Checkpoint> = [10, 20, 40].map(|p| head(org, &l, p)).to_vec();
    let witness: Vec<Witnessed> = witnessed.iter().map(object).collect();
    let fresh = compare(org, &witness, &db(&l, 40, cps.clone()));
    assert_eq!((fresh.findings.len(), fresh.unanchored), (0, 1));
    let late = WitnessView::read(org, &witness, &key().verifying_key()).compare(
        &db(&l, 40, cps),
        t(40) + time::Duration::seconds(61),
        time::Duration::seconds(60),
    );
    assert_eq!(
        late.findings,
        vec![WitnessFinding::NotAnchored {
            kind: CheckpointKind::Head,
            position: 40,
            signed_at: t(40)
        }]
    );
}

#[test]
fn each_kind_of_tampering_is_named_with_what_is_missing() {
    let org = OrgId::generate();
    let l = links(org, 30, "e");
    let all: Vec<Checkpoint> = [10, 20, 30].map(|p| head(org, &l, p)).to_vec();
    let witness: Vec<Witnessed> = all.iter().map(object).collect();

    // Tail cut: events 26..=30, their chain rows and the newest checkpoint gone.
    let cut = compare(org, &witness, &db(&l, 25, all[..2].to_vec()));
    assert_eq!(
        cut.findings,
        vec![
            WitnessFinding::Short {
                ends_at: 25,
                anchored: 30,
                link: l[&30]
            },
            WitnessFinding::Missing {
                kind: CheckpointKind::Head,
                position: 30,
                signed_at: t(30)
            },
        ]
    );
    assert!(
        cut.findings[0]
            .to_string()
            .contains("chain ends at 25, witness anchored head at 30 (link ")
    );
    assert!(
        cut.findings[0]
            .to_string()
            .contains("positions 26..=30 are missing")
    );

    // A checkpoint deleted, the chain intact.
    let deleted = compare(
        org,
        &witness,
        &db(&l, 30, vec![all[0].clone(), all[2].clone()]),
    );
    assert_eq!(
        deleted.findings,
        vec![WitnessFinding::Missing {
            kind: CheckpointKind::Head,
            position: 20,
            signed_at: t(20)
        }]
    );

    // A checkpoint altered in the database (its signature no longer holds),
    // and one replaced by another validly signed statement about 20.
    let mut altered = all.clone();
    altered[1].link = l[&19];
    let report = compare(org, &witness, &db(&l, 30, altered));
    assert_eq!(
        report.findings,
        vec![WitnessFinding::Differs {
            kind: CheckpointKind::Head,
            position: 20
        }]
    );
    let mut resigned = all.clone();
    resigned[1] = Checkpoint::sign(&key(), org, CheckpointKind::Head, 20, l[&19], t(20));
    assert_eq!(
        compare(org, &witness, &db(&l, 30, resigned)).findings,
        vec![WitnessFinding::Differs {
            kind: CheckpointKind::Head,
            position: 20
        }]
    );

    // History rewritten and re-signed: every link from 15 on differs.
    let mut rewritten = links(org, 30, "e");
    let other = links(org, 30, "forged");
    for p in 15..=30 {
        rewritten.insert(p, other[&p]);
    }
    let report = compare(org, &witness, &db(&rewritten, 30, all.clone()));
    assert_eq!(
        report.findings,
        vec![
            WitnessFinding::ChainDiffers { position: 20 },
            WitnessFinding::ChainDiffers { position: 30 }
        ]
    );
}

#[test]
fn forged_objects_and_deletions_in_the_witness_are_findings_and_nothing_else() {
    let org = OrgId::generate();
    let l = links(org, 30, "e");
    let all: Vec<Checkpoint> = [10, 20, 30].map(|p| head(org, &l, p)).to_vec();
    let mut witness: Vec<Witnessed> = all.iter().map(object).collect();
    // Unsigned: a head at 40 the chain never reached.
    let mut unsigned = head(org, &links(org, 40, "e"), 40);
    unsigned.signature = [1; 64];
    witness.push(object(&unsigned));
    // Signed by another key.
    let stranger = Checkpoint::sign(
        &SigningKey::from_bytes(&[8; 32]),
        org,
        CheckpointKind::Head,
        50,
        l[&30],
        t(50),
    );
    witness.push(object(&stranger));
    // A genuine checkpoint under another name, and another org's.
    witness.push(Witnessed::Object {
        name: format!("{org}/00000000000000000099-head.json"),
        version: Some("v9".into()),
        body: encode(&all[0]),
    });
    let elsewhere = OrgId::generate();
    let theirs = head(elsewhere, &links(elsewhere, 5, "x"), 5);
    witness.push(Witnessed::Object {
        name: object_name(&theirs).replace(&elsewhere.to_string(), &org.to_string()),
        version: None,
        body: encode(&theirs),
    });
    witness.push(Witnessed::Object {
        name: "garbage".into(),
        version: None,
        body: b"not json".to_vec(),
    });
    witness.push(Witnessed::DeleteMarker {
        name: object_name(&all[2]),
        version: Some("dm1".into()),
    });
    let report = compare(org, &witness, &db(&l, 30, all.clone()));
    assert_eq!(report.anchored, 30, "forgeries anchor nothing");
    assert_eq!(report.matched, 3);
    let forged = report
        .findings
        .iter()
        .filter(|f| matches!(f, WitnessFinding::Forged { .. }))
        .count();
    assert_eq!(forged, 5, "{:?}", report.findings);
    assert!(report.findings.contains(&WitnessFinding::DeleteMarker {
        name: format!("{} (version dm1)", object_name(&all[2]))
    }));
    assert_eq!(report.findings.len(), 6);
}

#[test]
fn a_restored_database_is_short_then_forks_when_it_signs_again() {
    let org = OrgId::generate();
    let before = links(org, 30, "e");
    let witnessed: Vec<Checkpoint> = [10, 20, 30].map(|p| head(org, &before, p)).to_vec();
    let mut witness: Vec<Witnessed> = witnessed.iter().map(object).collect();
    // Restored from the copy taken at 20.
    let restored = db(&before, 20, witnessed[..2].to_vec());
    let report = compare(org, &witness, &restored);
    assert_eq!(
        report.findings,
        vec![
            WitnessFinding::Short {
                ends_at: 20,
                anchored: 30,
                link: before[&30]
            },
            WitnessFinding::Missing {
                kind: CheckpointKind::Head,
                position: 30,
                signed_at: t(30)
            }
        ]
    );
    // It carries on: 21..=35 are other events; it signs 30 and 35 again,
    // and they are anchored too.
    let mut after = before.clone();
    let other = links(org, 35, "after");
    for p in 21..=35 {
        after.insert(p, other[&p]);
    }
    let resigned: Vec<Checkpoint> = [30, 35]
        .map(|p| {
            Checkpoint::sign(
                &key(),
                org,
                CheckpointKind::Head,
                p,
                after[&p],
                t(60 + i64::try_from(p).unwrap_or(0)),
            )
        })
        .to_vec();
    witness.extend(resigned.iter().map(object));
    let mut cps = witnessed[..2].to_vec();
    cps.extend(resigned);
    let report = compare(org, &witness, &db(&after, 35, cps));
    assert_eq!(
        report.findings,
        vec![WitnessFinding::Fork {
            kind: CheckpointKind::Head,
            position: 30
        }]
    );
}

#[test]
fn checkpoints_inside_the_retired_prefix_may_leave_the_database() {
    let org = OrgId::generate();
    let l = links(org, 30, "e");
    let tombstone = Checkpoint::sign(&key(), org, CheckpointKind::Tombstone, 10, l[&10], t(31));
    let heads: Vec<Checkpoint> = [5, 10, 20, 30].map(|p| head(org, &l, p)).to_vec();
    let mut witness: Vec<Witnessed> = heads.iter().map(object).collect();
    witness.push(object(&tombstone));
    let side = DatabaseSide {
        ends_at: 30,
        starts_after: 10,
        links: l
            .iter()
            .filter(|(p, _)| **p > 10)
            .map(|(p, h)| (*p, *h))
            .collect(),
        checkpoints: vec![tombstone.clone(), heads[2].clone(), heads[3].clone()],
    };
    let report = compare(org, &witness, &side);
    assert_eq!(report.findings, vec![]);
    assert_eq!(report.matched, 3);
    // Without the tombstone the database claims positions it no longer has.
    let lost = DatabaseSide {
        starts_after: 0,
        checkpoints: vec![heads[2].clone(), heads[3].clone()],
        ..side
    };
    let report = compare(org, &witness, &lost);
    assert!(report.findings.contains(&WitnessFinding::Missing {
        kind: CheckpointKind::Tombstone,
        position: 10,
        signed_at: t(31)
    }));
}

#[test]
fn organizations_only_the_witness_knows_are_named() {
    let known = OrgId::generate();
    let gone = OrgId::generate();
    let names = vec![known.to_string(), gone.to_string(), "junk".to_owned()];
    assert_eq!(
        unknown_orgs(&names, &[known]),
        vec![gone.to_string(), "junk".to_owned()]
    );
}
