use super::*;

#[test]
fn keys_init_writes_a_private_key_once() {
    let dir = tmp();
    let out = carapace(&dir, &[], &["keys", "init", "--out", "master.key"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let key = std::fs::read_to_string(dir.path().join("master.key")).unwrap_or_default();
    assert_eq!(key.len(), 64);
    assert!(key.bytes().all(|b| b.is_ascii_hexdigit()));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("master.key"))
            .map(|m| m.permissions().mode())
            .unwrap_or(0);
        assert_eq!(mode & 0o777, 0o600);
    }
    let again = carapace(&dir, &[], &["keys", "init", "--out", "master.key"]);
    assert_eq!(again.status.code(), Some(2), "never overwrites");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("master.key")).unwrap_or_default(),
        key
    );
}

#[test]
fn keys_rotate_for_an_org_and_for_the_kek() {
    let dir = tmp();
    let created = carapace(
        &dir,
        &[],
        &["org", "create", "--name", "Demo", "--slug", "demo"],
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    let org = carapace(&dir, &[], &["keys", "rotate", "--org", "demo"]);
    assert!(org.status.success(), "{}", text(&org.stderr));
    assert!(
        text(&org.stdout).contains("demo: done"),
        "{}",
        text(&org.stdout)
    );
    assert!(
        carapace(&dir, &[], &["keys", "init", "--out", "next.key"])
            .status
            .success()
    );
    let kek = carapace(&dir, &[], &["keys", "rotate", "--kek", "next.key"]);
    assert!(kek.status.success(), "{}", text(&kek.stderr));
    assert!(
        text(&kek.stdout).contains("data keys re-wrapped, 0 TOTP seeds re-wrapped"),
        "{}",
        text(&kek.stdout)
    );
    // The next rotation works only with the new KEK in place.
    let stale = carapace(&dir, &[], &["keys", "rotate", "--org", "demo"]);
    assert_ne!(
        stale.status.code(),
        Some(0),
        "the old KEK cannot unwrap the re-wrapped keys"
    );
    let fresh = carapace(
        &dir,
        &[("CARAPACE_MASTER_KEY_FILE", "next.key")],
        &["keys", "rotate", "--org", "demo"],
    );
    assert!(fresh.status.success(), "{}", text(&fresh.stderr));
    assert_eq!(
        carapace(&dir, &[], &["keys", "rotate"]).status.code(),
        Some(2)
    );
}

#[tokio::test]
async fn keys_move_from_the_key_file_to_kms_and_then_need_kms() {
    let Some(kms) = carapace_testkit::kms::LocalKms::start("keys_move_to_kms").await else {
        return;
    };
    let key_id = kms.create_key().await;
    let dir = tmp();
    let created = carapace(
        &dir,
        &[],
        &["org", "create", "--name", "Demo", "--slug", "demo"],
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    assert!(
        carapace(&dir, &[], &["keys", "rotate", "--org", "demo"])
            .status
            .success()
    );
    let aws = [
        ("CARAPACE_KMS_ENDPOINT", kms.endpoint.as_str()),
        ("AWS_REGION", "us-east-1"),
        ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        ),
    ];
    let moved = carapace(&dir, &aws, &["keys", "rotate", "--kek-kms-key-id", &key_id]);
    assert!(moved.status.success(), "{}", text(&moved.stderr));
    assert!(
        text(&moved.stdout).contains("CARAPACE_KMS_KEY_ID="),
        "{}",
        text(&moved.stdout)
    );
    assert_ne!(
        carapace(&dir, &[], &["keys", "rotate", "--org", "demo"])
            .status
            .code(),
        Some(0),
        "the key file no longer unwraps anything"
    );
    let with_kms: Vec<(&str, &str)> = aws
        .iter()
        .copied()
        .chain([("CARAPACE_KMS_KEY_ID", key_id.as_str())])
        .collect();
    let rotated = carapace(&dir, &with_kms, &["keys", "rotate", "--org", "demo"]);
    assert!(rotated.status.success(), "{}", text(&rotated.stderr));
    assert!(
        text(&rotated.stdout).contains("demo: data key version"),
        "{}",
        text(&rotated.stdout)
    );

    let both: Vec<(&str, &str)> = with_kms
        .iter()
        .copied()
        .chain([("CARAPACE_MASTER_KEY_FILE", "master.key")])
        .collect();
    let refused = carapace(&dir, &both, &["config", "check"]);
    assert_ne!(refused.status.code(), Some(0));
    assert!(
        text(&refused.stderr).contains("CARAPACE_MASTER_KEY_FILE"),
        "{}",
        text(&refused.stderr)
    );
}

#[test]
fn org_delete_needs_confirmation_then_the_org_is_gone_for_good() {
    let dir = tmp();
    let created = carapace(
        &dir,
        &[],
        &["org", "create", "--name", "Demo", "--slug", "demo"],
    );
    assert!(created.status.success(), "{}", text(&created.stderr));
    // Two data key versions, as after a first write and one rotation.
    for _ in 0..2 {
        let rotated = carapace(&dir, &[], &["keys", "rotate", "--org", "demo"]);
        assert!(rotated.status.success(), "{}", text(&rotated.stderr));
    }

    let unconfirmed = carapace(
        &dir,
        &[],
        &["org", "delete", "--slug", "demo", "--confirm", "dem"],
    );
    assert_eq!(unconfirmed.status.code(), Some(2));
    assert!(text(&unconfirmed.stderr).contains("--confirm"));
    let token = carapace(
        &dir,
        &[],
        &["dev-token", "--org", "demo", "--role", "viewer"],
    );
    assert!(
        token.status.success(),
        "still there: {}",
        text(&token.stderr)
    );

    let deleted = carapace(
        &dir,
        &[],
        &["org", "delete", "--slug", "demo", "--confirm", "demo"],
    );
    assert!(deleted.status.success(), "{}", text(&deleted.stderr));
    let out: serde_json::Value =
        serde_json::from_slice(&deleted.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out["deleted"], true);
    assert_eq!(out["data_keys_destroyed"], 2, "versions 1 and 2 destroyed");

    for args in [
        &["dev-token", "--org", "demo", "--role", "viewer"][..],
        &["keys", "rotate", "--org", "demo"],
        &["org", "delete", "--slug", "demo", "--confirm", "demo"],
    ] {
        let after = carapace(&dir, &[], args);
        assert_ne!(after.status.code(), Some(0), "{args:?} after deletion");
    }
    let reused = carapace(
        &dir,
        &[],
        &["org", "create", "--name", "Again", "--slug", "demo"],
    );
    assert!(
        !reused.status.success(),
        "a deleted org's slug is never reused"
    );
}
