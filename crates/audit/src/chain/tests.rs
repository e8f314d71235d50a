use super::*;
use crate::event::{Access, Outcome};
use carapace_tenancy::{SubjectId, TenantContext};
use ed25519_dalek::SigningKey;
use time::OffsetDateTime;

fn key() -> SigningKey {
    SigningKey::from_bytes(&[5; 32])
}

fn chain(org: OrgId, n: usize) -> Vec<ChainEntry> {
    let access = Access::system(TenantContext::new(
        org,
        SubjectId::parse("system:test").unwrap_or_else(|e| panic!("{e}")),
    ));
    let mut head = ChainHead::genesis(org);
    (0..n)
        .map(|i| {
            let e = access.event(
                "patient.read",
                "patient",
                Some(i.to_string()),
                Outcome::Allowed,
            );
            let bytes = e.canonical();
            let (position, leaf, link) = head.append(&bytes);
            ChainEntry {
                position,
                event_id: e.id,
                leaf,
                link,
                event: Some(bytes),
                columns: Some(StoredColumns::of(&e)),
            }
        })
        .collect()
}

fn checkpoint(org: OrgId, entries: &[ChainEntry], at: usize) -> Checkpoint {
    Checkpoint::sign(
        &key(),
        org,
        CheckpointKind::Head,
        entries[at - 1].position,
        entries[at - 1].link,
        OffsetDateTime::now_utc(),
    )
}

fn verify(
    org: OrgId,
    entries: &[ChainEntry],
    checkpoints: Vec<Checkpoint>,
) -> Result<Verified, Finding> {
    let mut v = ChainVerifier::new(org, None, checkpoints, &key().verifying_key())?;
    for e in entries {
        v.push(e)?;
    }
    v.finish()
}

fn at(position: u64, problem: Problem) -> Result<Verified, Finding> {
    Err(Finding { position, problem })
}

#[test]
fn an_edit_of_any_searchable_column_is_found_at_its_position() {
    let org = OrgId::generate();
    type Edit = fn(&mut StoredColumns);
    let edits: [(&str, Edit); 6] = [
        ("recorded_at", |c| c.at += time::Duration::microseconds(1)),
        ("actor", |c| c.actor = "system:purge".into()),
        ("action", |c| c.action = "patient.list".into()),
        ("resource_type", |c| c.resource_type = "user".into()),
        ("resource_id", |c| c.resource_id = None),
        ("outcome", |c| c.outcome = "denied".into()),
    ];
    for (column, edit) in edits {
        let mut entries = chain(org, 6);
        if let Some(c) = entries[3].columns.as_mut() {
            edit(c);
        }
        assert_eq!(
            verify(org, &entries, vec![]),
            at(4, Problem::ColumnModified { column }),
            "{column}"
        );
    }
    let mut gone = chain(org, 3);
    gone[1].columns = None;
    assert_eq!(verify(org, &gone, vec![]), at(2, Problem::Deleted));
}

#[test]
fn leaf_link_and_genesis_hashes_are_domain_separated() {
    let org = OrgId::generate();
    let bytes = b"same bytes";
    assert_ne!(leaf_hash(bytes), Sha256::digest(bytes).as_slice());
    let zero = [0u8; 32];
    // A link over (prev, leaf) never equals the leaf of prev||leaf.
    let mut joined = zero.to_vec();
    joined.extend_from_slice(&leaf_hash(bytes));
    assert_ne!(link_hash(&zero, &leaf_hash(bytes)), leaf_hash(&joined));
    assert_ne!(genesis(org), leaf_hash(org.as_uuid().as_bytes()));
    assert_ne!(genesis(org), genesis(OrgId::generate()));
}

#[test]
fn an_intact_chain_verifies_with_its_checkpoints() {
    let org = OrgId::generate();
    let entries = chain(org, 10);
    let cps = vec![checkpoint(org, &entries, 4), checkpoint(org, &entries, 10)];
    assert_eq!(
        verify(org, &entries, cps),
        Ok(Verified {
            entries: 10,
            head: 10,
            checkpoints: 2
        })
    );
    assert_eq!(
        verify(org, &[], Vec::new()).map(|v| v.head),
        Ok(0),
        "an empty chain is fine"
    );
}

#[test]
fn each_kind_of_tampering_is_named_at_its_position() {
    let org = OrgId::generate();
    let entries = chain(org, 10);
    let cps = || vec![checkpoint(org, &entries, 10)];

    let mut modified = entries.clone();
    if let Some(bytes) = modified[4].event.as_mut() {
        let text = String::from_utf8_lossy(bytes).replace("allowed", "denied");
        *bytes = text.into_bytes();
    }
    assert_eq!(verify(org, &modified, cps()), at(5, Problem::Modified));

    let mut deleted_event = entries.clone();
    deleted_event[2].event = None;
    assert_eq!(verify(org, &deleted_event, cps()), at(3, Problem::Deleted));

    let mut deleted_entry = entries.clone();
    deleted_entry.remove(6);
    assert_eq!(
        verify(org, &deleted_entry, cps()),
        at(
            7,
            Problem::Sequence {
                expected: 7,
                found: 8
            }
        )
    );

    // Inserted: a well-formed entry spliced in at 4, later positions renumbered.
    let mut inserted = entries.clone();
    let extra = chain(org, 1).remove(0);
    let mut head = ChainHead {
        position: 3,
        link: entries[2].link,
    };
    let bytes = extra.event.clone().unwrap_or_default();
    let (position, leaf, link) = head.append(&bytes);
    inserted.insert(
        3,
        ChainEntry {
            position,
            event_id: extra.event_id,
            leaf,
            link,
            event: Some(bytes),
            columns: extra.columns.clone(),
        },
    );
    for (i, e) in inserted.iter_mut().enumerate().skip(4) {
        e.position = u64::try_from(i + 1).unwrap_or(u64::MAX);
    }
    assert_eq!(verify(org, &inserted, cps()), at(5, Problem::BrokenLink));

    let mut reordered = entries.clone();
    reordered.swap(1, 2);
    reordered[1].position = 2;
    reordered[2].position = 3;
    assert_eq!(verify(org, &reordered, cps()), at(2, Problem::BrokenLink));

    let truncated = &entries[..7];
    assert_eq!(
        verify(org, truncated, cps()),
        at(
            8,
            Problem::Truncated {
                ends_at: 7,
                signed: 10
            }
        )
    );

    // Rewritten history (every link recomputed) still contradicts the checkpoint.
    let mut rewritten = entries.clone();
    let mut head = ChainHead::genesis(org);
    for (i, e) in rewritten.iter_mut().enumerate() {
        if i == 5 {
            let forged = chain(org, 1).remove(0);
            e.event_id = forged.event_id;
            e.event = forged.event;
            e.columns = forged.columns;
        }
        let (_, leaf, link) = head.append(e.event.as_deref().unwrap_or_default());
        e.leaf = leaf;
        e.link = link;
    }
    assert_eq!(
        verify(org, &rewritten, cps()),
        at(10, Problem::CheckpointMismatch)
    );

    let other_org = chain(OrgId::generate(), 3);
    assert_eq!(
        verify(org, &other_org, Vec::new()),
        at(1, Problem::Misplaced)
    );
}

#[test]
fn forged_checkpoints_and_tombstones_are_refused() {
    let org = OrgId::generate();
    let entries = chain(org, 5);
    let mut forged = checkpoint(org, &entries, 5);
    forged.position = 4;
    assert_eq!(
        verify(org, &entries, vec![forged]),
        at(4, Problem::BadSignature)
    );
    let stranger = SigningKey::from_bytes(&[6; 32]);
    let other = Checkpoint::sign(
        &stranger,
        org,
        CheckpointKind::Head,
        5,
        entries[4].link,
        OffsetDateTime::now_utc(),
    );
    assert_eq!(
        verify(org, &entries, vec![other]),
        at(5, Problem::BadSignature)
    );

    // After retention removed 1..=3, the rest verifies from the tombstone.
    let tombstone = Checkpoint::sign(
        &key(),
        org,
        CheckpointKind::Tombstone,
        3,
        entries[2].link,
        OffsetDateTime::now_utc(),
    );
    let mut v = ChainVerifier::new(
        org,
        Some(&tombstone),
        vec![checkpoint(org, &entries, 2), checkpoint(org, &entries, 5)],
        &key().verifying_key(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    for e in &entries[3..] {
        assert_eq!(v.push(e), Ok(()));
    }
    assert_eq!(v.finish().map(|v| (v.entries, v.head)), Ok((2, 5)));
}
