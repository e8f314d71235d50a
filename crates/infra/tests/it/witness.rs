//! The audit witness against moto's S3 (Object Lock, compliance mode), on
//! SQLite and PostgreSQL: anchoring writes each checkpoint locked, and
//! the tamper matrix that the database's own checkpoints cannot see (a
//! tail cut with its checkpoints, a deleted checkpoint, a forged one in
//! the database or in the bucket, a whole-database rollback) is reported
//! by comparing with the witness, naming what is missing. An unreachable
//! witness leaves checkpoints queued until it is back.

use std::sync::Arc;
use std::time::Duration;

use carapace_audit::chain::{CheckpointKind, Problem};
use std::sync::atomic::{AtomicUsize, Ordering};

use carapace_audit::chain::Checkpoint;
use carapace_audit::witness::{Listed, Witness, WitnessFinding, WitnessFuture, WitnessReport};
use carapace_clinical::patient::{PatientId, PatientRepository as _};
use carapace_infra::audit::{AuditChainer, verify_org};
use carapace_infra::s3::S3Witness;
use carapace_infra::witness::{backlog, compare_org, unknown_orgs};
use carapace_infra::{Database, SeaPatients};
use carapace_tenancy::{OrgId, TenantContext};
use carapace_testkit::s3::LocalS3;
use ed25519_dalek::SigningKey;
use sea_orm::ConnectionTrait as _;

use crate::support::{acc, demographics, keys, new_org, sqlite};

mod tamper;

fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[12; 32])
}

const PREFIX: &str = "carapace/test";

/// A database, a bucket, and the means to play the superuser.
struct Bench {
    db: Database,
    s3: LocalS3,
    witness: Arc<S3Witness>,
    dir: Option<tempfile::TempDir>,
    pg: Option<carapace_testkit::PgTestDb>,
    /// SQLite: a connection of its own, the append-only triggers dropped.
    raw: Option<sea_orm::DatabaseConnection>,
}

/// One organization's trail: a patient read again and again.
struct Trail {
    ctx: TenantContext,
    patient: Option<PatientId>,
}

impl Bench {
    async fn sqlite(test: &str) -> Option<Self> {
        let s3 = LocalS3::start(test).await?;
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let db = sqlite(&dir).await;
        let witness = Arc::new(s3.witness(PREFIX));
        let mut bench = Self {
            db,
            s3,
            witness,
            dir: Some(dir),
            pg: None,
            raw: None,
        };
        bench.open_raw().await;
        Some(bench)
    }

    async fn postgres(test: &str) -> Option<Self> {
        // A database of its own: the anchoring pass reads the whole queue.
        let pg = carapace_testkit::postgres_fresh(test, true).await?;
        let s3 = LocalS3::start(test).await?;
        let db = Database::connect(&pg.app_settings())
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let witness = Arc::new(s3.witness(PREFIX));
        Some(Self {
            db,
            s3,
            witness,
            dir: None,
            pg: Some(pg),
            raw: None,
        })
    }

    async fn open_raw(&mut self) {
        let Some(dir) = &self.dir else { return };
        let raw =
            sea_orm::Database::connect(format!("sqlite://{}/carapace.db", dir.path().display()))
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        for t in ["audit_events", "audit_chain", "audit_checkpoints"] {
            for suffix in ["no_update", "no_delete"] {
                raw.execute_unprepared(&format!("DROP TRIGGER IF EXISTS {t}_{suffix}"))
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        self.raw = Some(raw);
    }

    /// How `org` is written in SQL here.
    fn org(&self, org: OrgId) -> String {
        if self.pg.is_some() {
            format!("'{org}'")
        } else {
            let hex: String = org
                .as_uuid()
                .as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("X'{hex}'")
        }
    }

    /// Runs `sql` as the superuser with the append-only triggers off.
    async fn tamper(&self, sql: &str) {
        match (&self.pg, &self.raw) {
            (Some(pg), _) => carapace_testkit::exec_as_owner(
                pg,
                &format!("SET session_replication_role = replica; {sql}"),
            )
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e:#}")),
            (None, Some(raw)) => raw
                .execute_unprepared(sql)
                .await
                .map(|_| ())
                .unwrap_or_else(|e| panic!("{sql}: {e}")),
            (None, None) => panic!("no way to tamper"),
        }
    }

    /// Removes `org`'s positions after `keep`, their events, and the
    /// checkpoints beyond it (a tail cut; with `queue`, the queue's rows
    /// too, as a restore of an older copy would).
    async fn cut_after(&self, org: OrgId, keep: u64, queue: bool) {
        let o = self.org(org);
        let mut sql = format!(
            "DELETE FROM audit_events WHERE org_id = {o} AND id IN
               (SELECT event_id FROM audit_chain WHERE org_id = {o} AND position > {keep});
             DELETE FROM audit_chain WHERE org_id = {o} AND position > {keep};
             DELETE FROM audit_checkpoints WHERE org_id = {o} AND position > {keep};"
        );
        if queue {
            sql.push_str(&format!(
                "DELETE FROM audit_witness_queue WHERE org_id = {o} AND position > {keep};"
            ));
        }
        self.tamper(&sql).await;
    }

    fn chainer(&self) -> AuditChainer {
        AuditChainer::new(self.db.clone(), signing_key(), Duration::ZERO)
            .with_witness(self.witness.clone())
    }

    async fn trail(&self) -> Trail {
        Trail {
            ctx: new_org(&self.db).await,
            patient: None,
        }
    }

    /// `n` more events in `trail`, chained, checkpointed and anchored.
    async fn grow(&self, trail: &mut Trail, n: usize) {
        let repo = SeaPatients::new(self.db.clone(), keys(&self.db));
        let who = acc(&trail.ctx);
        let mut left = n;
        if trail.patient.is_none() {
            let p = repo
                .create(&who, &demographics("Ann", None), None)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            trail.patient = Some(p.id);
            left -= 1;
        }
        let id = trail.patient.unwrap_or_else(|| unreachable!());
        for _ in 0..left {
            repo.get(&who, id).await.unwrap_or_else(|e| panic!("{e}"));
        }
        self.chainer()
            .run_once()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }

    async fn compare(&self, org: OrgId) -> WitnessReport {
        compare_org(
            &self.db,
            org,
            &signing_key().verifying_key(),
            self.witness.as_ref(),
            Duration::from_secs(3600),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The database's own verdict (its chain against its checkpoints).
    async fn verify(&self, org: OrgId) -> Option<(u64, Problem)> {
        verify_org(&self.db, org, &signing_key().verifying_key())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .chain
            .err()
            .map(|f| (f.position, f.problem))
    }

    fn key(org: OrgId, position: u64) -> String {
        format!("{PREFIX}/{org}/{position:020}-head.json")
    }
}

/// The bucket, counting the objects a comparison fetches.
struct Counting(Arc<S3Witness>, AtomicUsize);

impl Witness for Counting {
    fn put<'a>(&'a self, checkpoint: &'a Checkpoint) -> WitnessFuture<'a, ()> {
        self.0.put(checkpoint)
    }
    fn list(&self, org: OrgId) -> WitnessFuture<'_, Vec<Listed>> {
        self.0.list(org)
    }
    fn get<'a>(&'a self, name: &'a str, version: Option<&'a str>) -> WitnessFuture<'a, Vec<u8>> {
        self.1.fetch_add(1, Ordering::Relaxed);
        self.0.get(name, version)
    }
    fn orgs(&self) -> WitnessFuture<'_, Vec<String>> {
        self.0.orgs()
    }
}

fn missing(position: u64, report: &WitnessReport) -> bool {
    report.findings.iter().any(|f| {
        matches!(f, WitnessFinding::Missing { kind: CheckpointKind::Head, position: p, .. } if *p == position)
    })
}

async fn anchoring_writes_each_checkpoint_locked(bench: Bench) {
    let mut trail = bench.trail().await;
    let org = trail.ctx.org();
    bench.grow(&mut trail, 5).await;
    bench.grow(&mut trail, 5).await;
    let keys = bench.s3.keys(&format!("{PREFIX}/{org}/")).await;
    assert_eq!(keys, vec![Bench::key(org, 5), Bench::key(org, 10)]);
    let (mode, until) = bench.s3.lock_of(&Bench::key(org, 10)).await;
    assert_eq!(mode.as_deref(), Some("COMPLIANCE"));
    let until = until.unwrap_or_default();
    let expected = time::OffsetDateTime::now_utc() + time::Duration::days(2190);
    let year = expected.year().to_string();
    assert!(until.starts_with(&year), "retained until {until}");
    // Locked: no one deletes the version, the bucket's owner included.
    let version = bench.s3.version_of(&Bench::key(org, 10)).await;
    assert_eq!(
        bench
            .s3
            .delete(&Bench::key(org, 10), version.as_deref())
            .await,
        403
    );
    let waiting = backlog(&bench.db).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((waiting.waiting, waiting.oldest), (0, None));
    assert_eq!(
        bench.compare(org).await,
        WitnessReport {
            findings: vec![],
            anchored: 10,
            matched: 2,
            unanchored: 0
        }
    );
    // Writing the same checkpoints again (a pass that lost its marks) is
    // harmless: a second identical version of each.
    let o = bench.org(org);
    bench
        .tamper(&format!(
            "UPDATE audit_witness_queue SET anchored_at = NULL WHERE org_id = {o}"
        ))
        .await;
    bench.grow(&mut trail, 0).await;
    assert_eq!(
        backlog(&bench.db)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .waiting,
        0
    );
    assert_eq!(bench.compare(org).await.findings, vec![]);
    // The listing's digests match the stored checkpoints: nothing is
    // fetched. A version that differs is.
    let counting = Counting(bench.witness.clone(), AtomicUsize::new(0));
    let vk = signing_key().verifying_key();
    let quiet = compare_org(&bench.db, org, &vk, &counting, Duration::from_secs(3600))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((quiet.matched, counting.1.load(Ordering::Relaxed)), (2, 0));
    assert_eq!(bench.s3.put_raw(&Bench::key(org, 10), b"{}").await, 200);
    let loud = compare_org(&bench.db, org, &vk, &counting, Duration::from_secs(3600))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(counting.1.load(Ordering::Relaxed), 1);
    assert_eq!(loud.matched, 2, "the locked versions still match");
    assert!(matches!(
        loud.findings.as_slice(),
        [WitnessFinding::Forged { .. }]
    ));
}

#[tokio::test]
async fn sqlite_anchoring_writes_each_checkpoint_locked_in_compliance_mode() {
    if let Some(bench) = Bench::sqlite("sqlite_witness_anchoring").await {
        anchoring_writes_each_checkpoint_locked(bench).await;
    }
}

#[tokio::test]
async fn postgres_anchoring_writes_each_checkpoint_locked_in_compliance_mode() {
    if let Some(bench) = Bench::postgres("postgres_witness_anchoring").await {
        anchoring_writes_each_checkpoint_locked(bench).await;
    }
}

async fn unreachable_witness_queues(bench: Bench) {
    let relay = carapace_testkit::relay::Relay::start(&bench.s3.authority()).await;
    let through = Arc::new(
        S3Witness::new(
            &bench
                .s3
                .settings_at(&format!("http://{}/", relay.addr()), PREFIX),
        )
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let chainer = || {
        AuditChainer::new(bench.db.clone(), signing_key(), Duration::ZERO)
            .with_witness(through.clone())
    };
    let mut trail = bench.trail().await;
    let org = trail.ctx.org();
    let repo = SeaPatients::new(bench.db.clone(), keys(&bench.db));
    let p = repo
        .create(&acc(&trail.ctx), &demographics("Ann", None), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    trail.patient = Some(p.id);
    relay.reset().await;
    let chained = chainer().run_once().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(chained, 1, "chaining goes on without the witness");
    repo.get(&acc(&trail.ctx), p.id)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    chainer().run_once().await.unwrap_or_else(|e| panic!("{e}"));
    let waiting = backlog(&bench.db).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(waiting.waiting, 2, "both checkpoints wait");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let now = time::OffsetDateTime::now_utc();
    assert!(waiting.age(now) >= Duration::from_secs(1));
    assert!(
        bench.s3.keys(&format!("{PREFIX}/{org}/")).await.is_empty(),
        "nothing reached the bucket"
    );
    // A witness that swallows everything and never answers: the pass gives
    // up at the timeout.
    relay.black_hole().await;
    let started = std::time::Instant::now();
    chainer().run_once().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        backlog(&bench.db)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .waiting,
        2
    );
    relay.restore();
    chainer().run_once().await.unwrap_or_else(|e| panic!("{e}"));
    let after = backlog(&bench.db).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (after.waiting, after.oldest),
        (0, None),
        "all anchored once it is back"
    );
    assert_eq!(
        bench.s3.keys(&format!("{PREFIX}/{org}/")).await,
        vec![Bench::key(org, 1), Bench::key(org, 2)]
    );
    assert_eq!(bench.compare(org).await.findings, vec![]);
    assert!(through.orgs().await.is_ok());
}

#[tokio::test]
async fn sqlite_an_unreachable_witness_leaves_checkpoints_queued_until_it_is_back() {
    if let Some(bench) = Bench::sqlite("sqlite_witness_unreachable").await {
        unreachable_witness_queues(bench).await;
    }
}

#[tokio::test]
async fn postgres_an_unreachable_witness_leaves_checkpoints_queued_until_it_is_back() {
    if let Some(bench) = Bench::postgres("postgres_witness_unreachable").await {
        unreachable_witness_queues(bench).await;
    }
}
