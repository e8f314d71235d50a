//! Retention through the binary: `carapace audit purge --archive DIR`
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
