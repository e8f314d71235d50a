//! Retention through the binary (to a directory and to an S3 bucket with
//! Object Lock): `carapace audit purge --archive DIR`
//! exports what is past retention to an archive, checks what it wrote,
//! removes it leaving a signed tombstone, and `audit verify --archive`
//! proves the archive and the remaining chain together; an edited archive
//! is named.

use std::process::{Command, Output};

use carapace_audit::{Access, Outcome};
use carapace_tenancy::{OrgId, SubjectId, TenantContext};

const BIN: &str = env!("CARGO_BIN_EXE_carapace");

fn run(dir: &std::path::Path, env: &[(&str, String)], args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"))
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn purge_archives_what_is_past_retention_and_verify_proves_both_together() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db_url = format!("sqlite://{}/carapace.db", dir.path().display());
    let env = vec![
        ("CARAPACE_DATABASE_URL", db_url.clone()),
        (
            "CARAPACE_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
        ("CARAPACE_AUDIT_RETENTION_DAYS", "365".to_owned()),
    ];
    let made = run(
        dir.path(),
        &env,
        &[
            "org",
            "create",
            "--name",
            "Old Clinic",
            "--slug",
            "old-clinic",
        ],
    );
    assert!(made.status.success(), "{}", text(&made));
    let org: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap_or_default();
    let org = OrgId::from_uuid(
        uuid::Uuid::parse_str(org["id"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    // Five events from 400 days ago, three from today.
    let access = Access::system(TenantContext::new(
        org,
        SubjectId::parse("clinician-ada").unwrap_or_else(|e| panic!("{e}")),
    ));
    let old = time::OffsetDateTime::now_utc() - time::Duration::days(400);
    let events: Vec<_> = (0..8)
        .map(|i| {
            let mut e = access.event(
                "patient.read",
                "patient",
                Some(format!("p-{i}")),
                Outcome::Allowed,
            );
            if i < 5 {
                e.at = old + time::Duration::seconds(i);
            }
            e
        })
        .collect();
    let raw = sea_orm::Database::connect(db_url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    carapace_infra::audit::append(&raw, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    let archive = dir.path().join("archive-1");
    let archive_arg = archive.display().to_string();
    let purged = run(
        dir.path(),
        &env,
        &[
            "audit",
            "purge",
            "--org",
            "old-clinic",
            "--archive",
            &archive_arg,
        ],
    );
    let said = text(&purged);
    assert!(purged.status.success(), "{said}");
    assert!(
        said.contains("archived 5 events (positions 1..=5)"),
        "{said}"
    );
    assert!(said.contains("removed positions 1..=5"), "{said}");

    let verified = run(
        dir.path(),
        &env,
        &[
            "audit",
            "verify",
            "--org",
            "old-clinic",
            "--archive",
            &archive_arg,
        ],
    );
    let said = text(&verified);
    assert!(verified.status.success(), "{said}");
    assert!(
        said.contains("archive ok: 5 events, positions 1..=5, the chain resumes after 5"),
        "{said}"
    );
    // The remaining chain (the three recent events and the purge's own
    // record) verifies from the tombstone on.
    assert!(said.contains(": ok: 4 events chained (head 9)"), "{said}");

    // Nothing more is past retention: no second archive.
    let again = dir.path().join("archive-2");
    let out = run(
        dir.path(),
        &env,
        &[
            "audit",
            "purge",
            "--org",
            "old-clinic",
            "--archive",
            &again.display().to_string(),
        ],
    );
    assert!(
        out.status.success() && text(&out).contains("nothing is past retention"),
        "{}",
        text(&out)
    );
    assert!(!again.exists());

    // An edited archive is named, and so is an archive of something else.
    let events_file = archive.join(carapace_audit::export::EVENTS_FILE);
    let original = std::fs::read_to_string(&events_file).unwrap_or_default();
    std::fs::write(&events_file, original.replacen("allowed", "denied", 1))
        .unwrap_or_else(|e| panic!("{e}"));
    let out = run(
        dir.path(),
        &env,
        &[
            "audit",
            "verify",
            "--org",
            "old-clinic",
            "--archive",
            &archive_arg,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("archive TAMPERED"), "{}", text(&out));
}

/// The same through an S3 bucket with Object Lock (moto): `audit export
/// --out s3://…` uploads a locked export that `audit verify --export
/// s3://…` checks alone; a second export to the same prefix is refused;
/// `audit purge --archive s3://…` archives what is past retention there,
/// reads it back before removing anything, and `audit verify --archive
/// s3://…` proves the archive and the chain together; an archive
/// overwritten in the bucket is named.
#[tokio::test]
async fn exports_and_retention_archives_go_off_site_to_a_locked_bucket() {
    use carapace_testkit::s3::LocalS3;
    let Some(s3) = LocalS3::start("retention_s3").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db_url = format!("sqlite://{}/carapace.db", dir.path().display());
    let env = vec![
        ("CARAPACE_DATABASE_URL", db_url.clone()),
        (
            "CARAPACE_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
        ("CARAPACE_AUDIT_RETENTION_DAYS", "365".to_owned()),
        // The archive is reached as the witness would be (no witness set).
        ("CARAPACE_AUDIT_WITNESS_ENDPOINT", s3.endpoint().to_owned()),
        ("CARAPACE_AUDIT_WITNESS_ALLOW_LOOPBACK", "true".to_owned()),
        ("CARAPACE_AUDIT_WITNESS_REGION", "us-east-1".to_owned()),
        ("CARAPACE_AUDIT_WITNESS_ACCESS_KEY_ID", "test".to_owned()),
        (
            "CARAPACE_AUDIT_WITNESS_SECRET_ACCESS_KEY",
            "test".to_owned(),
        ),
        ("TMPDIR", dir.path().display().to_string()),
    ];
    let made = run(
        dir.path(),
        &env,
        &[
            "org",
            "create",
            "--name",
            "Far Clinic",
            "--slug",
            "far-clinic",
        ],
    );
    assert!(made.status.success(), "{}", text(&made));
    let org: serde_json::Value = serde_json::from_slice(&made.stdout).unwrap_or_default();
    let org = OrgId::from_uuid(
        uuid::Uuid::parse_str(org["id"].as_str().unwrap_or_default())
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let access = Access::system(TenantContext::new(
        org,
        SubjectId::parse("clinician-ada").unwrap_or_else(|e| panic!("{e}")),
    ));
    let old = time::OffsetDateTime::now_utc() - time::Duration::days(400);
    let events: Vec<_> = (0..8)
        .map(|i| {
            let mut e = access.event(
                "patient.read",
                "patient",
                Some(format!("p-{i}")),
                Outcome::Allowed,
            );
            if i < 5 {
                e.at = old + time::Duration::seconds(i);
            }
            e
        })
        .collect();
    let raw = sea_orm::Database::connect(db_url)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    carapace_infra::audit::append(&raw, &events)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let bucket = s3.bucket.clone();

    // An export off site, locked for 30 days.
    let export = format!("s3://{bucket}/exports/far-clinic/all");
    let args = [
        "audit",
        "export",
        "--org",
        "far-clinic",
        "--from",
        "2000-01-01T00:00:00Z",
        "--to",
        "2100-01-01T00:00:00Z",
        "--out",
        export.as_str(),
        "--retain-days",
        "30",
    ];
    let out = run(dir.path(), &env, &args);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("exported 9 events (positions 1..=9) to {export}")),
        "{said}"
    );
    let mut keys = s3.keys("exports/far-clinic/all/").await;
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "exports/far-clinic/all/events.ndjson",
            "exports/far-clinic/all/manifest.json"
        ]
    );
    for key in &keys {
        let (mode, until) = s3.lock_of(key).await;
        assert_eq!(mode.as_deref(), Some("COMPLIANCE"), "{key}");
        let until = time::OffsetDateTime::parse(
            until.as_deref().unwrap_or_default(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap_or_else(|e| panic!("{key}: {e}"));
        let days = (until - time::OffsetDateTime::now_utc()).whole_days();
        assert!((29..=30).contains(&days), "{key}: locked {days} days");
    }
    // Never over an export already there.
    let out = run(dir.path(), &env, &args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("already holds an export"),
        "{}",
        text(&out)
    );
    // Checked alone, from the bucket.
    let out = run(dir.path(), &env, &["audit", "verify", "--export", &export]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("export ok: 9 events, positions 1..=9"),
        "{said}"
    );

    // Retention: what is past it goes to the archive in the bucket first.
    let archive = format!("s3://{bucket}/archive/far-clinic/2025");
    let out = run(
        dir.path(),
        &env,
        &[
            "audit",
            "purge",
            "--org",
            "far-clinic",
            "--archive",
            &archive,
        ],
    );
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains(&format!("archived 5 events (positions 1..=5) to {archive}")),
        "{said}"
    );
    assert!(said.contains("removed positions 1..=5"), "{said}");
    let verify = [
        "audit",
        "verify",
        "--org",
        "far-clinic",
        "--archive",
        &archive,
    ];
    let out = run(dir.path(), &env, &verify);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("archive ok: 5 events, positions 1..=5, the chain resumes after 5"),
        "{said}"
    );
    // Someone with write access to the bucket writes over the archive's
    // events (a new version; the locked one stays): named.
    let events_key = "archive/far-clinic/2025/events.ndjson";
    let locked = s3.version_of(events_key).await;
    assert_eq!(s3.put_raw(events_key, b"{\"forged\":true}\n").await, 200);
    let out = run(dir.path(), &env, &verify);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("archive TAMPERED"), "{}", text(&out));
    assert_eq!(
        s3.delete(events_key, locked.as_deref()).await,
        403,
        "the archived version stays"
    );
    // No scratch files are left behind.
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("carapace-audit-")
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// On PostgreSQL a purge runs as the schema owner: without
/// `CARAPACE_DATABASE_OWNER_URL` it refuses (exit 2, naming the variable)
/// instead of trying as the server's role.
#[tokio::test]
async fn purge_on_postgres_needs_the_owner() {
    let Some(pg) = carapace_testkit::postgres("retention::purge_needs_owner").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let env = vec![
        ("CARAPACE_DATABASE_URL", pg.app_url.clone()),
        ("CARAPACE_DATABASE_TLS", "disable".to_owned()),
        (
            "CARAPACE_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
    ];
    let archive = dir.path().join("archive").display().to_string();
    let refused = run(
        dir.path(),
        &env,
        &["audit", "purge", "--org", "any", "--archive", &archive],
    );
    let said = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("purging runs as the schema owner"), "{said}");
    assert!(said.contains("CARAPACE_DATABASE_OWNER_URL"), "{said}");
    assert!(!std::path::Path::new(&archive).exists());
}
