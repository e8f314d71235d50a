use std::io::Cursor;

use super::*;

async fn export_and_purge(db: Database, owner: Database) {
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &demographics("Ann", None), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..9 {
        repo.get(&acc(&ctx), p.id)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    chainer(&db)
        .chain_org(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let all = events(&db, &ctx).await;
    assert_eq!(all.len(), 10);
    let key = signing_key();
    let org = ctx.org();
    let epoch = time::OffsetDateTime::UNIX_EPOCH;
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let (full, full_file) = carapace_infra::audit::export_org(&db, org, epoch, later, &key)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (
            full.body.first_position,
            full.body.last_position,
            full.body.count
        ),
        (1, 10, 10)
    );
    assert_eq!(
        carapace_audit::export::verify_export(&full, full_file.as_slice(), &key.verifying_key()),
        Ok(10)
    );

    // Only positions 1..=3 exported: only they may go, even if older ones exist.
    let (first3, first3_file) = carapace_infra::audit::export_org(&db, org, epoch, all[3].at, &key)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first3.body.count, 3);
    // A later stretch does not cover the chain's start: refused.
    let (tail, tail_file) = carapace_infra::audit::export_org(&db, org, all[5].at, later, &key)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        carapace_infra::audit::purge_org(&owner, org, later, &tail, Cursor::new(&tail_file), &key)
            .await
            .is_err()
    );
    // A doctored export is refused.
    let doctored = String::from_utf8_lossy(&first3_file).replacen("allowed", "denied", 1);
    assert!(
        carapace_infra::audit::purge_org(
            &owner,
            org,
            later,
            &first3,
            Cursor::new(doctored.as_bytes()),
            &key
        )
        .await
        .is_err()
    );
    // Nothing is past retention yet: nothing goes.
    let none =
        carapace_infra::audit::purge_org(&owner, org, epoch, &full, Cursor::new(&full_file), &key)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert!(none.to < none.from);

    let done = carapace_infra::audit::purge_org(
        &owner,
        org,
        later,
        &first3,
        Cursor::new(&first3_file),
        &key,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((done.from, done.to), (1, 3), "only what the export holds");
    // Retention cutoff at event 6: of the rest, only 4..=5 are past it.
    let done = carapace_infra::audit::purge_org(
        &owner,
        org,
        all[5].at,
        &full,
        Cursor::new(&full_file),
        &key,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (done.from, done.to),
        (4, 5),
        "a whole prefix, only past retention"
    );

    chainer(&db)
        .chain_org(org)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let verified = verify_org(&db, org, &key.verifying_key())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let chain = verified.chain.unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(
        (chain.entries, chain.head),
        (8, 13),
        "positions 6..=10, the trail read and the two purges verify from the tombstone"
    );
    let left = events(&db, &ctx).await;
    assert_eq!(
        left.iter().filter(|e| e.action == "audit.purge").count(),
        2,
        "each purge is itself recorded"
    );
    assert_eq!(left.len(), 5 + 2);

    // Everything past retention goes; the chain carries on from the tombstone.
    let (rest, rest_file) = carapace_infra::audit::export_org(&db, org, epoch, later, &key)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let gone =
        carapace_infra::audit::purge_org(&owner, org, later, &rest, Cursor::new(&rest_file), &key)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(gone.from, 6);
    repo.get(&acc(&ctx), p.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    chainer(&db)
        .chain_org(org)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let verified = verify_org(&db, org, &key.verifying_key())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let chain = verified.chain.unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(
        chain.head,
        gone.to + chain.entries,
        "positions continue after the tombstone"
    );
    assert!(chain.entries >= 2, "the purge event and the new read");
}

/// The server's role and the schema owner (who purges) on `pg`.
async fn app_and_owner(pg: &carapace_testkit::PgTestDb) -> (Database, Database) {
    let connect = async |settings| {
        Database::connect(&settings)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    };
    (
        connect(pg.app_settings()).await,
        connect(pg.owner_settings()).await,
    )
}

#[tokio::test]
async fn sqlite_export_then_purge_past_retention_keeps_a_verifiable_chain() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    export_and_purge(db.clone(), db).await;
}

#[tokio::test]
async fn postgres_export_then_purge_past_retention_keeps_a_verifiable_chain() {
    let Some(pg) = carapace_testkit::postgres("export_then_purge").await else {
        return;
    };
    let (db, owner) = app_and_owner(pg).await;
    export_and_purge(db, owner).await;
}

/// An events file that reads as `first` until it is rewound, then as
/// `second`: the export replaced on disk between the purge's two reads.
struct ReplacedBetweenReads {
    first: Cursor<Vec<u8>>,
    second: Cursor<Vec<u8>>,
    rewound: bool,
}

impl ReplacedBetweenReads {
    fn now(&mut self) -> &mut Cursor<Vec<u8>> {
        if self.rewound {
            &mut self.second
        } else {
            &mut self.first
        }
    }
}

impl std::io::Read for ReplacedBetweenReads {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.now().read(buf)
    }
}

impl std::io::BufRead for ReplacedBetweenReads {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.now().fill_buf()
    }

    fn consume(&mut self, n: usize) {
        self.now().consume(n);
    }
}

impl std::io::Seek for ReplacedBetweenReads {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.rewound = true;
        self.second.seek(pos)
    }
}

/// A purge of more events than it compares and removes per round trip
/// (2,000): every page goes, and a file replaced after it was verified
/// (its links kept, an event changed) removes nothing.
async fn purge_in_pages(db: Database, owner: Database) {
    const N: u64 = 4_100;
    let ctx = new_org(&db).await;
    let log = SeaAuditLog::new(db.clone());
    for _ in 0..N {
        let read = acc(&ctx).event(
            "patient.read",
            "patient",
            Some("p-1".into()),
            Outcome::Allowed,
        );
        log.record(&read).await.unwrap_or_else(|e| panic!("{e}"));
    }
    chainer(&db)
        .chain_org_to_completion(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let (key, org) = (signing_key(), ctx.org());
    let later = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    let epoch = time::OffsetDateTime::UNIX_EPOCH;
    let (manifest, file) = carapace_infra::audit::export_org(&db, org, epoch, later, &key)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(manifest.body.count, N);

    let text = String::from_utf8_lossy(&file).into_owned();
    let at = text
        .rfind("patient.read")
        .unwrap_or_else(|| panic!("an event"));
    let replaced = format!("{}patient.list{}", &text[..at], &text[at + 12..]);
    let swapped = ReplacedBetweenReads {
        first: Cursor::new(file.clone()),
        second: Cursor::new(replaced.into_bytes()),
        rewound: false,
    };
    let refused =
        carapace_infra::audit::purge_org(&owner, org, later, &manifest, swapped, &key).await;
    assert!(
        refused.is_err(),
        "the file compared must be the file verified"
    );
    assert_eq!(
        carapace_infra::audit::chain_resumes(&db, org)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        None,
        "no tombstone"
    );
    assert_eq!(
        u64::try_from(events(&db, &ctx).await.len()).unwrap_or(0),
        N,
        "nothing removed"
    );

    let gone =
        carapace_infra::audit::purge_org(&owner, org, later, &manifest, Cursor::new(&file), &key)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((gone.from, gone.to), (1, N));
    let left = events(&db, &ctx).await;
    assert_eq!(
        left.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(),
        vec!["audit.purge"],
        "every page removed; the purge itself recorded"
    );
    chainer(&db)
        .chain_org(org)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let verified = verify_org(&db, org, &key.verifying_key())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(verified.chain.is_ok(), "{:?}", verified.chain);
}

#[tokio::test]
async fn sqlite_purge_in_pages_compares_the_file_it_verified() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    purge_in_pages(db.clone(), db).await;
}

#[tokio::test]
async fn postgres_purge_in_pages_compares_the_file_it_verified() {
    let Some(pg) = carapace_testkit::postgres("purge_in_pages").await else {
        return;
    };
    let (db, owner) = app_and_owner(pg).await;
    purge_in_pages(db, owner).await;
}
