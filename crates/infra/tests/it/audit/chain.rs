use super::*;

#[tokio::test]
async fn a_hundred_concurrent_writers_leave_one_gapless_chain() {
    let Some(pg) = carapace_testkit::postgres("hundred_concurrent_audit_writers").await else {
        return;
    };
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &demographics("Ann", None), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // 100 writers reading the patient at once, while three chainers race.
    let mut writers = Vec::new();
    for i in 0..100 {
        let (repo, ctx) = (repo.clone(), ctx.clone());
        writers.push(tokio::spawn(async move {
            let who = Access::system(TenantContext::new(
                ctx.org(),
                SubjectId::parse(&format!("reader-{i}")).unwrap_or_else(|e| panic!("{e}")),
            ));
            repo.get(&who, p.id)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .is_some()
        }));
    }
    let chainers: Vec<_> = (0..3)
        .map(|_| {
            let (db, org) = (db.clone(), ctx.org());
            tokio::spawn(async move {
                let c = chainer(&db);
                for _ in 0..20 {
                    c.chain_org(org).await.unwrap_or_else(|e| panic!("{e}"));
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    for w in writers {
        assert!(w.await.unwrap_or_else(|e| panic!("{e}")));
    }
    for c in chainers {
        c.await.unwrap_or_else(|e| panic!("{e}"));
    }
    chainer(&db)
        .chain_org(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let verified = verify_org(&db, ctx.org(), &signing_key().verifying_key())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verified.pending, 0);
    let chain = verified.chain.unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(chain.entries, 101, "create + 100 reads, each exactly once");
    assert_eq!(chain.head, 101, "positions 1..=101, no gap, no fork");
    assert!(chain.checkpoints >= 1);
}

#[tokio::test]
async fn concurrent_reads_of_many_orgs_share_commits_and_keep_to_their_tenant() {
    let Some(pg) = carapace_testkit::postgres("grouped_reads_across_orgs").await else {
        return;
    };
    // A small pool: two shared transactions at once, so the readers queue.
    let mut settings = pg.app_settings();
    settings.pool_max = 4;
    let db = Database::connect(&settings)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let mut orgs = Vec::new();
    for name in ["Ada", "Bea", "Cai"] {
        let ctx = new_org(&db).await;
        let p = repo
            .create(&acc(&ctx), &demographics(name, None), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        orgs.push((ctx, p.id, name));
    }
    let mut readers = Vec::new();
    for i in 0..60 {
        let (ctx, id, name) = orgs[i % 3].clone();
        let foreign = orgs[(i + 1) % 3].1;
        let repo = repo.clone();
        readers.push(tokio::spawn(async move {
            let mine = repo
                .get(&acc(&ctx), id)
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .unwrap_or_else(|| panic!("{name}'s patient is readable"));
            assert_eq!(mine.demographics.given_name.expose_phi().as_str(), name);
            // Another organization's patient, asked for in the same batch
            // of transactions, is not there.
            let theirs = repo
                .get(&acc(&ctx), foreign)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(theirs.is_none(), "another tenant's patient stays hidden");
        }));
    }
    for r in readers {
        r.await.unwrap_or_else(|e| panic!("{e}"));
    }
    for (ctx, id, _) in &orgs {
        let reads: Vec<_> = events(&db, ctx)
            .await
            .into_iter()
            .filter(|e| e.action == "patient.read")
            .collect();
        assert_eq!(reads.len(), 40, "each read recorded once, in its own org");
        let own = Some(id.as_uuid().to_string());
        let allowed = reads
            .iter()
            .filter(|e| e.outcome == Outcome::Allowed && e.resource_id == own)
            .count();
        let missed = reads
            .iter()
            .filter(|e| e.outcome == Outcome::NotFound && e.resource_id != own)
            .count();
        assert_eq!((allowed, missed), (20, 20));
        assert!(reads.iter().all(|e| e.org == ctx.org()));
    }
    // Rows written by one transaction share its id (xmin).
    let owner = sea_orm::Database::connect(pg.owner_url.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ids: Vec<String> = orgs
        .iter()
        .map(|(c, _, _)| format!("'{}'", c.org()))
        .collect();
    let row = owner
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            format!(
                "SELECT count(DISTINCT xmin::text)::bigint AS n FROM audit_events \
                 WHERE action = 'patient.read' AND org_id IN ({})",
                ids.join(",")
            ),
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("a count"));
    let commits: i64 = row.try_get("", "n").unwrap_or_else(|e| panic!("{e}"));
    assert!(
        commits < 120,
        "120 concurrent reads shared commits ({commits} transactions)"
    );
}

#[tokio::test]
async fn an_event_committed_after_a_chaining_pass_is_still_chained() {
    let Some(pg) = carapace_testkit::postgres("late_commit_still_chained").await else {
        return;
    };
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let repo = SeaPatients::new(db.clone(), keys(&db));
    let ctx = new_org(&db).await;
    let p = repo
        .create(&acc(&ctx), &demographics("Ann", None), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // A slow transaction writes its event and has not committed yet...
    let raw = sea_orm::Database::connect(pg.app_url.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let slow = raw.begin().await.unwrap_or_else(|e| panic!("{e}"));
    slow.execute_raw(tenant_setting(&ctx))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let late = acc(&ctx).event("patient.read", "patient", None, Outcome::Allowed);
    carapace_infra::audit::append(&slow, std::slice::from_ref(&late))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // ...while events after it commit and a chaining pass runs.
    repo.get(&acc(&ctx), p.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let first = chainer(&db)
        .chain_org(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(first, 2, "the committed create and read");
    slow.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let second = chainer(&db)
        .chain_org(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(second, 1, "the late event joins the chain on the next pass");
    let third = chainer(&db)
        .chain_org(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(third, 0, "and only once");
    let verified = verify_org(&db, ctx.org(), &signing_key().verifying_key())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verified.pending, 0);
    let chain = verified.chain.unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(chain.entries, 3);
}

/// `ctx`'s tenant, for this transaction only (what every repository sets).
fn tenant_setting(ctx: &TenantContext) -> Statement {
    Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT set_config('app.org_id', $1, true)",
        [ctx.org().to_string().into()],
    )
}

/// Commits `n` events of `ctx`'s organization, 500 per transaction, on a
/// connection of its own (nothing chains them).
async fn commit_backlog(url: &str, ctx: &TenantContext, n: usize) {
    let writer = sea_orm::Database::connect(url.to_owned())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..n.div_ceil(500) {
        let tx = writer.begin().await.unwrap_or_else(|e| panic!("{e}"));
        tx.execute_raw(tenant_setting(ctx))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let batch: Vec<AuditEvent> = (0..500)
            .map(|_| acc(ctx).event("patient.list", "patient", None, Outcome::Allowed))
            .collect();
        carapace_infra::audit::append(&tx, &batch)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        tx.commit().await.unwrap_or_else(|e| panic!("{e}"));
    }
    writer.close().await.unwrap_or_else(|e| panic!("{e}"));
}

/// A pass that chains a full batch and then fails (here: its checkpoint
/// cannot be written) rolls back, and the next passes start from where the
/// last *committed* pass stopped: nothing it had taken is skipped.
#[tokio::test]
async fn a_full_pass_that_rolls_back_leaves_nothing_behind() {
    let test = "backlog_pass_rolls_back";
    let Some(pg) = carapace_testkit::postgres_fresh(test, true).await else {
        return;
    };
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ctx = new_org(&db).await;
    commit_backlog(&pg.app_url, &ctx, 4500).await;
    let app = carapace_testkit::APP_ROLE;
    carapace_testkit::exec_as_owner(
        &pg,
        &format!("REVOKE INSERT ON audit_checkpoints FROM {app}"),
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let chainer = chainer(&db);
    assert!(chainer.chain_org(ctx.org()).await.is_err());
    carapace_testkit::exec_as_owner(&pg, &format!("GRANT INSERT ON audit_checkpoints TO {app}"))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let drained = chainer
        .chain_org_to_completion(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(drained, 4500);
    let verified = verify_org(&db, ctx.org(), &signing_key().verifying_key())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verified.pending, 0);
    assert_eq!(verified.chain.map(|c| c.entries).ok(), Some(4500));
}

/// A backlog of more than two batches drains pass by pass from where the
/// last pass stopped (not from the horizon each time), and still chains an
/// event older than the whole backlog whose transaction commits only after
/// the first pass: exactly once, with nothing left behind.
#[tokio::test]
async fn a_backlog_drains_from_where_it_stopped_and_still_takes_late_commits() {
    let Some(pg) = carapace_testkit::postgres("backlog_drains_with_late_commit").await else {
        return;
    };
    let db = Database::connect(&pg.app_settings())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let ctx = new_org(&db).await;
    let raw = sea_orm::Database::connect(pg.app_url.clone())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // The oldest event of all, in a transaction that stays open...
    let slow = raw.begin().await.unwrap_or_else(|e| panic!("{e}"));
    slow.execute_raw(tenant_setting(&ctx))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let late = acc(&ctx).event("patient.read", "patient", None, Outcome::Allowed);
    carapace_infra::audit::append(&slow, std::slice::from_ref(&late))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // ...while a backlog of 4,500 newer events commits.
    commit_backlog(&pg.app_url, &ctx, 4500).await;
    let chainer = chainer(&db);
    let first = chainer
        .chain_org(ctx.org())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        first, 2000,
        "a full batch; the late event is not visible yet"
    );
    slow.commit().await.unwrap_or_else(|e| panic!("{e}"));
    let mut passes = vec![first];
    loop {
        let added = chainer
            .chain_org(ctx.org())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        passes.push(added);
        if added == 0 {
            break;
        }
        assert!(passes.len() < 10, "{passes:?}");
    }
    assert_eq!(passes.iter().sum::<u64>(), 4501, "{passes:?}");
    // A chainer that never saw the backlog (another server's) agrees.
    assert_eq!(
        crate::audit::chainer(&db)
            .chain_org(ctx.org())
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        0
    );
    let verified = verify_org(&db, ctx.org(), &signing_key().verifying_key())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(verified.pending, 0);
    let chain = verified.chain.unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(chain.entries, 4501);
    // The late event is in the chain, once.
    let look = raw.begin().await.unwrap_or_else(|e| panic!("{e}"));
    look.execute_raw(tenant_setting(&ctx))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let found = look
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM audit_chain WHERE event_id = $1",
            [late.id.into()],
        ))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .and_then(|r| r.try_get::<i64>("", "n").ok());
    look.commit().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(found, Some(1));
}
