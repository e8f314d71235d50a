use super::*;

/// `carapace org delete`: the organization stops resolving, its keys are
/// destroyed, and no new key (so no new data) can be made for it.
async fn org_deletion(db: Database) {
    use carapace_tenancy::OrganizationRepository as _;
    let ring = keys(&db);
    let repo = SeaPatients::new(db.clone(), ring.clone());
    let orgs = carapace_infra::SeaOrganizations::new(db.clone());
    let gone = new_org(&db).await;
    let kept = new_org(&db).await;
    let p = repo
        .create(&acc(&gone), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let q = repo
        .create(&acc(&kept), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        orgs.mark_deleted(&gone)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    assert_eq!(ring.shred(&gone).await.unwrap_or_else(|e| panic!("{e}")), 1);

    assert!(
        orgs.find_by_id(gone.org())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .is_none(),
        "a deleted organization no longer resolves"
    );
    assert!(
        !carapace_infra::all_org_ids(&db)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .contains(&gone.org()),
        "maintenance commands skip it"
    );
    assert!(
        !orgs
            .mark_deleted(&gone)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        "deleting twice reports nothing to do"
    );
    // Its rows are still there, as ciphertext nobody can open; reads no
    // longer see them at all.
    let fresh = SeaPatients::new(db.clone(), keys(&db));
    assert!(matches!(fresh.get(&acc(&gone), p.id).await, Ok(None)));
    // And no new key comes to life for it.
    assert!(fresh.create(&acc(&gone), &marked(), None).await.is_err());
    assert!(
        fresh
            .get(&acc(&kept), q.id)
            .await
            .is_ok_and(|p| p.is_some()),
        "other orgs are untouched"
    );
}

#[tokio::test]
async fn sqlite_org_deletion_shreds_keys_and_refuses_new_ones() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    org_deletion(sqlite(&dir).await).await;
}

#[tokio::test]
async fn postgres_org_deletion_shreds_keys_and_refuses_new_ones() {
    let Some(pg) =
        carapace_testkit::postgres("postgres_org_deletion_shreds_keys_and_refuses_new_ones").await
    else {
        return;
    };
    org_deletion(
        Database::connect(&pg.app_settings())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
}

#[tokio::test]
async fn a_wrong_key_encryption_key_reads_nothing() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let other_kek = std::sync::Arc::new(carapace_infra::keys::KeyRing::new(
        db.clone(),
        std::sync::Arc::new(carapace_phi_crypto::LocalSealer::new(&[8; 32])),
    ));
    let wrong = SeaPatients::new(db.clone(), other_kek);
    let err = wrong.get(&acc(&ctx), p.id).await.err().map(|e| e.code());
    assert_eq!(
        err,
        Some("storage_unavailable"),
        "an unusable key provider is an outage (503), not data"
    );
}

/// Stores an idempotent response and a break-glass reason for `patient`,
/// so every sealed table has a row.
async fn marked_extras(
    db: &Database,
    ctx: &carapace_tenancy::TenantContext,
    patient: carapace_clinical::patient::PatientId,
) -> [u8; 32] {
    use carapace_infra::idempotency::{Begin, SeaIdempotency, StoredResponse};
    let subject =
        carapace_tenancy::SubjectId::parse("clinician-bob").unwrap_or_else(|e| panic!("{e}"));
    let until = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let reason = Phi::new(MARKERS[5].to_owned());
    let glass = SeaPatients::new(db.clone(), keys(db))
        .break_glass(&acc(ctx), patient, &subject, &reason, until)
        .await;
    assert!(glass.unwrap_or_else(|e| panic!("{e}")));
    let records = SeaIdempotency::new(db.clone(), keys(db));
    let (key_hash, now) = ([9; 32], time::OffsetDateTime::now_utc());
    let begun = records.begin(ctx, key_hash, [8; 32], now).await;
    assert_eq!(begun.unwrap_or_else(|e| panic!("{e}")), Begin::New);
    let response = StoredResponse {
        status: 201,
        content_type: Some("application/json".into()),
        location: None,
        body: MARKERS[0].as_bytes().to_vec(),
    };
    records
        .complete(ctx, key_hash, &response)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    key_hash
}

async fn rotation(db: Database) {
    use carapace_infra::sealed::{self, rotation::Rotation};
    let ring = keys(&db);
    let repo = SeaPatients::new(db.clone(), ring.clone());
    let ctx = new_org(&db).await;
    for i in 0..25 {
        let mut d = marked();
        d.given_name = Phi::new(format!("Patient{i}"));
        repo.create(&acc(&ctx), &d, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let before = repo
        .list(&acc(&ctx), &all_orgs())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .items;
    assert_eq!(before.len(), 25);
    // A row in every other sealed table too.
    marked_appointment(&db, &ctx, before[0].id).await;
    let key_hash = marked_extras(&db, &ctx, before[0].id).await;
    let rotation = Rotation::new(db.clone(), ring.clone());
    let usage = rotation.usage(&ctx).await.unwrap_or_else(|e| panic!("{e}"));
    for t in &usage {
        assert!(t.rows.get(&1).is_some_and(|n| *n > 0), "{}: a row", t.table);
    }
    assert_eq!(ring.rotate(&ctx).await.unwrap_or_else(|e| panic!("{e}")), 2);

    // Readers keep reading while rows move.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (repo, ctx, stop) = (repo.clone(), ctx.clone(), stop.clone());
        tokio::spawn(async move {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let page = repo
                    .list(&acc(&ctx), &all_orgs())
                    .await
                    .unwrap_or_else(|e| panic!("read during rotation: {e}"));
                assert_eq!(page.items.len(), 25, "no row lost mid-rotation");
                reads += 1;
                tokio::task::yield_now().await;
            }
            reads
        })
    };
    // One batch, then "the process dies": a fresh key ring resumes.
    assert_eq!(
        rotation
            .reencrypt_batch(&ctx, &sealed::patients::SEALED, 7)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        7
    );
    // Half moved: searches find rows under either version.
    let q = PatientQuery {
        member_id: Some(Phi::new(MARKERS[2].to_owned())),
        ..all_orgs()
    };
    let found = repo.list(&acc(&ctx), &q).await;
    assert_eq!(found.unwrap_or_else(|e| panic!("{e}")).items.len(), 25);
    let fresh = keys(&db);
    let resumed = Rotation::new(db.clone(), fresh.clone());
    let mut moved = 7;
    for table in sealed::REGISTRY {
        loop {
            let n = resumed
                .reencrypt_batch(&ctx, table, 7)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", table.table));
            if n == 0 {
                break;
            }
            moved += n;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let reads = reader.await.unwrap_or_else(|e| panic!("{e}"));
    assert!(reads > 0);
    let others: u64 = usage
        .iter()
        .filter(|t| t.table != "patients")
        .map(|t| t.rows.values().sum::<u64>())
        .sum();
    assert_eq!(moved, 25 + others);
    for t in resumed.usage(&ctx).await.unwrap_or_else(|e| panic!("{e}")) {
        assert_eq!(t.rows.keys().collect::<Vec<_>>(), vec![&2], "{}", t.table);
    }
    let resumed = SeaPatients::new(db.clone(), fresh.clone());
    let replay = carapace_infra::idempotency::SeaIdempotency::new(db.clone(), fresh)
        .begin(&ctx, key_hash, [8; 32], time::OffsetDateTime::now_utc())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        matches!(&replay, carapace_infra::idempotency::Begin::Replay(r) if r.body == MARKERS[0].as_bytes()),
        "the stored response reads under the new key"
    );
    let after = resumed
        .list(&acc(&ctx), &all_orgs())
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .items;
    assert_eq!(after, before, "every row, unchanged, under the new key");
    // The member-id index follows the new key.
    assert_eq!(
        resumed
            .list(&acc(&ctx), &q)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .items
            .len(),
        25
    );
}

#[tokio::test]
async fn sqlite_org_key_rotation_is_online_complete_and_resumable() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    rotation(sqlite(&dir).await).await;
}

#[tokio::test]
async fn postgres_org_key_rotation_is_online_complete_and_resumable() {
    let Some(pg) =
        carapace_testkit::postgres("postgres_org_key_rotation_is_online_complete_and_resumable")
            .await
    else {
        return;
    };
    rotation(
        Database::connect(&pg.app_settings())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
    )
    .await;
}

#[tokio::test]
async fn kek_rotation_rewraps_every_data_key_and_resumes() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let old = keys(&db); // KEK [7; 32]
    let repo = SeaPatients::new(db.clone(), old.clone());
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    old.rotate(&ctx).await.unwrap_or_else(|e| panic!("{e}"));
    let new_kek = carapace_phi_crypto::LocalSealer::new(&[42; 32]);
    assert_eq!(
        old.rewrap(&ctx, &new_kek)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        2
    );
    assert_eq!(
        old.rewrap(&ctx, &new_kek)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        0,
        "a rerun resumes past done keys"
    );
    let with_new = SeaPatients::new(
        db.clone(),
        std::sync::Arc::new(carapace_infra::keys::KeyRing::new(
            db.clone(),
            std::sync::Arc::new(new_kek),
        )),
    );
    assert_eq!(
        with_new
            .get(&acc(&ctx), p.id)
            .await
            .ok()
            .flatten()
            .map(|p| p.demographics),
        Some(marked())
    );
    let with_old = SeaPatients::new(db.clone(), keys(&db));
    assert!(
        with_old.get(&acc(&ctx), p.id).await.is_err(),
        "the old KEK no longer opens anything"
    );
}

/// A key provider that can be switched off (an unreachable KMS).
struct Flaky {
    inner: carapace_phi_crypto::LocalSealer,
    up: std::sync::atomic::AtomicBool,
}

impl carapace_phi_crypto::SecretSealer for Flaky {
    fn seal<'a>(
        &'a self,
        context: &'a [u8],
        plaintext: &'a [u8],
    ) -> carapace_phi_crypto::SealFuture<'a> {
        let result = if self.up.load(std::sync::atomic::Ordering::SeqCst) {
            self.inner.seal_now(context, plaintext)
        } else {
            Err(carapace_phi_crypto::SealError::Key)
        };
        Box::pin(std::future::ready(result))
    }
    fn open<'a>(
        &'a self,
        context: &'a [u8],
        sealed: &'a [u8],
    ) -> carapace_phi_crypto::SealFuture<'a> {
        let result = if self.up.load(std::sync::atomic::Ordering::SeqCst) {
            self.inner.open_now(context, sealed)
        } else {
            Err(carapace_phi_crypto::SealError::Key)
        };
        Box::pin(std::future::ready(result))
    }
}

#[tokio::test]
async fn key_provider_outage_cached_keys_then_503_and_never_plaintext() {
    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let kek = Arc::new(Flaky {
        inner: carapace_phi_crypto::LocalSealer::new(&[7; 32]),
        up: true.into(),
    });
    let short = std::time::Duration::from_millis(300);
    let ring = Arc::new(carapace_infra::keys::KeyRing::with_ttl(
        db.clone(),
        kek.clone(),
        short,
    ));
    let repo = SeaPatients::new(db.clone(), ring);
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    kek.up.store(false, Ordering::SeqCst);
    assert!(
        repo.get(&acc(&ctx), p.id).await.is_ok_and(|p| p.is_some()),
        "cached keys keep working"
    );
    tokio::time::sleep(short * 2).await;
    let err = repo.get(&acc(&ctx), p.id).await.err().map(|e| e.code());
    assert_eq!(
        err,
        Some("storage_unavailable"),
        "after the TTL: unavailable (503), never wrong data"
    );

    // A new organization cannot get a key: its write fails and leaves no row.
    let fresh = new_org(&db).await;
    assert!(repo.create(&acc(&fresh), &marked(), None).await.is_err());
    kek.up.store(true, Ordering::SeqCst);
    let listed = repo
        .list(&acc(&fresh), &all_orgs())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        listed.items.is_empty(),
        "nothing was written, in plaintext or half-encrypted"
    );
    assert!(
        repo.get(&acc(&ctx), p.id).await.is_ok_and(|p| p.is_some()),
        "back when the provider is"
    );
}
