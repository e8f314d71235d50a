use super::*;

/// Each column of the matrix in an organization of its own: 30 events,
/// checkpoints at 10, 20 and 30, all anchored.
async fn tamper_matrix(bench: Bench) {
    let thirty = || async {
        let mut trail = bench.trail().await;
        for _ in 0..3 {
            bench.grow(&mut trail, 10).await;
        }
        assert_eq!(bench.compare(trail.ctx.org()).await.anchored, 30);
        trail.ctx.org()
    };

    // Tail cut: positions 16..=30 and their events gone, and with them
    // the checkpoints at 20 and 30. The database alone cannot tell.
    let org = thirty().await;
    bench.cut_after(org, 15, false).await;
    assert_eq!(
        bench.verify(org).await,
        None,
        "the database agrees with itself"
    );
    let report = bench.compare(org).await;
    assert!(
        matches!(
            report.findings.first(),
            Some(WitnessFinding::Short {
                ends_at: 15,
                anchored: 30,
                ..
            })
        ),
        "{:?}",
        report.findings
    );
    assert!(missing(20, &report) && missing(30, &report));
    assert!(
        report.findings[0]
            .to_string()
            .starts_with("chain ends at 15, witness anchored head at 30 (link "),
        "{}",
        report.findings[0]
    );

    // Checkpoint deletion: the chain intact, the checkpoint at 20 gone.
    let org = thirty().await;
    let o = bench.org(org);
    bench
        .tamper(&format!(
            "DELETE FROM audit_checkpoints WHERE org_id = {o} AND position = 20"
        ))
        .await;
    assert_eq!(bench.verify(org).await, None);
    let report = bench.compare(org).await;
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    assert!(missing(20, &report));

    // Checkpoint forgery in the database: 20 now vouches for 19's link.
    let org = thirty().await;
    let o = bench.org(org);
    bench
        .tamper(&format!(
            "UPDATE audit_checkpoints SET link = (SELECT link FROM audit_chain
               WHERE org_id = {o} AND position = 19)
             WHERE org_id = {o} AND position = 20"
        ))
        .await;
    assert_eq!(bench.verify(org).await, Some((20, Problem::BadSignature)));
    assert_eq!(
        bench.compare(org).await.findings,
        vec![WitnessFinding::Differs {
            kind: CheckpointKind::Head,
            position: 20
        }]
    );

    // Checkpoint forgery in the bucket: a head at 40 that no key signed,
    // and a delete marker over the newest object.
    let org = thirty().await;
    let forged = format!(
        "{{\"format\":1,\"org\":\"{org}\",\"kind\":\"head\",\"position\":40,\"link\":\"{}\",\"signed_at\":1790000000,\"signature\":\"{}\"}}",
        "ab".repeat(32),
        "cd".repeat(64)
    );
    assert_eq!(
        bench
            .s3
            .put_raw(&Bench::key(org, 40), forged.as_bytes())
            .await,
        200
    );
    assert_eq!(bench.s3.delete(&Bench::key(org, 30), None).await, 204);
    let report = bench.compare(org).await;
    assert_eq!(report.anchored, 30, "a forgery anchors nothing");
    assert_eq!(report.matched, 3, "the hidden version still counts");
    assert_eq!(report.findings.len(), 2, "{:?}", report.findings);
    assert!(report.findings.iter().any(|f| matches!(f,
        WitnessFinding::Forged { name } if name.starts_with(&format!("{org}/00000000000000000040-head.json")))));
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, WitnessFinding::DeleteMarker { .. }))
    );
}

#[tokio::test]
async fn sqlite_the_witness_reports_each_tampering_the_database_cannot_see() {
    if let Some(bench) = Bench::sqlite("sqlite_witness_tamper_matrix").await {
        tamper_matrix(bench).await;
    }
}

#[tokio::test]
async fn postgres_the_witness_reports_each_tampering_the_database_cannot_see() {
    if let Some(bench) = Bench::postgres("postgres_witness_tamper_matrix").await {
        tamper_matrix(bench).await;
    }
}

#[tokio::test]
async fn sqlite_a_restored_copy_is_reported_short_then_forked_and_newer_orgs_unknown() {
    let Some(mut bench) = Bench::sqlite("sqlite_witness_rollback").await else {
        return;
    };
    let dir = bench
        .dir
        .as_ref()
        .map(|d| d.path().to_owned())
        .unwrap_or_default();
    let mut trail = bench.trail().await;
    let org = trail.ctx.org();
    bench.grow(&mut trail, 10).await;
    // The copy an operator (or an attacker) restores later.
    let backup = dir.join("backup.db");
    if let Some(raw) = &bench.raw {
        raw.execute_unprepared(&format!("VACUUM INTO '{}'", backup.display()))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    bench.grow(&mut trail, 10).await;
    bench.grow(&mut trail, 10).await;
    let mut later = bench.trail().await;
    bench.grow(&mut later, 3).await;
    assert_eq!(bench.compare(org).await.findings, vec![]);

    // Restore the copy over the live file.
    bench.db.clone().close().await;
    if let Some(raw) = bench.raw.take() {
        let _ = raw.close().await;
    }
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("carapace.db{suffix}")));
    }
    std::fs::copy(&backup, dir.join("carapace.db")).unwrap_or_else(|e| panic!("{e}"));
    let Some(tmp) = &bench.dir else { return };
    bench.db = sqlite(tmp).await;
    bench.open_raw().await;

    assert_eq!(bench.verify(org).await, None, "the copy agrees with itself");
    let report = bench.compare(org).await;
    assert!(
        matches!(
            report.findings.first(),
            Some(WitnessFinding::Short {
                ends_at: 10,
                anchored: 30,
                ..
            })
        ),
        "{:?}",
        report.findings
    );
    assert!(missing(20, &report) && missing(30, &report));
    assert_eq!(
        unknown_orgs(&bench.db, bench.witness.as_ref())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        vec![later.ctx.org().to_string()],
        "an organization created after the copy"
    );

    // Serving on from the copy: positions 11..=30 are other events now,
    // signed and anchored again.
    bench.grow(&mut trail, 10).await;
    bench.grow(&mut trail, 10).await;
    assert_eq!(bench.verify(org).await, None);
    let report = bench.compare(org).await;
    assert_eq!(
        report.findings,
        vec![
            WitnessFinding::Fork {
                kind: CheckpointKind::Head,
                position: 20
            },
            WitnessFinding::Fork {
                kind: CheckpointKind::Head,
                position: 30
            }
        ]
    );
}

#[tokio::test]
async fn postgres_a_rolled_back_trail_is_reported_short_then_forked() {
    let Some(bench) = Bench::postgres("postgres_witness_rollback").await else {
        return;
    };
    let mut trail = bench.trail().await;
    let org = trail.ctx.org();
    for _ in 0..3 {
        bench.grow(&mut trail, 10).await;
    }
    // What restoring the copy taken at 10 does to this trail: everything
    // after it is gone, the queue's rows included.
    bench.cut_after(org, 10, true).await;
    assert_eq!(bench.verify(org).await, None);
    let report = bench.compare(org).await;
    assert!(
        matches!(
            report.findings.first(),
            Some(WitnessFinding::Short {
                ends_at: 10,
                anchored: 30,
                ..
            })
        ),
        "{:?}",
        report.findings
    );
    assert!(missing(20, &report) && missing(30, &report));
    bench.grow(&mut trail, 10).await;
    bench.grow(&mut trail, 10).await;
    assert_eq!(bench.verify(org).await, None);
    let forks: Vec<u64> = bench
        .compare(org)
        .await
        .findings
        .iter()
        .filter_map(|f| match f {
            WitnessFinding::Fork { position, .. } => Some(*position),
            _ => None,
        })
        .collect();
    assert_eq!(forks, vec![20, 30]);
}
