//! The off-site archive against moto's S3 (Object Lock, compliance mode):
//! a file comes back byte for byte whether it was one PUT or a multipart
//! upload, every object is locked so its versions cannot be deleted, a
//! download over its cap is refused and leaves nothing, and an unreachable
//! bucket is an error, never a silent success.

use std::path::Path;

use carapace_audit::witness::WitnessError;
use carapace_infra::s3::S3Archive;
use carapace_infra::s3::archive::PART_BYTES;
use carapace_testkit::s3::LocalS3;

fn archive(s3: &LocalS3, prefix: &str) -> S3Archive {
    let mut settings = s3.settings_at(s3.endpoint(), prefix);
    settings.timeout = std::time::Duration::from_secs(30);
    S3Archive::new(&settings).unwrap_or_else(|e| panic!("{e}"))
}

/// `n` bytes that differ from part to part (a shuffled part would show).
fn pattern(n: usize) -> Vec<u8> {
    (0..n)
        .map(|i| u8::try_from((i / 4099 + i * 31) % 251).unwrap_or(0))
        .collect()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{e}"));
    path
}

#[tokio::test]
async fn files_come_back_whole_and_locked_in_one_put_or_many_parts() {
    let Some(s3) = LocalS3::start("archive_round_trip").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let a = archive(&s3, "exports/acme/2026");
    // A manifest-sized file (one PUT) and one of two full parts and a bit.
    for (name, size) in [
        ("manifest.json", 1500),
        ("events.ndjson", 2 * PART_BYTES + 12_345),
    ] {
        let bytes = pattern(size);
        let path = write(dir.path(), name, &bytes);
        assert!(!a.exists(name).await.unwrap_or_else(|e| panic!("{e}")));
        let sent = a
            .upload(name, &path)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sent, u64::try_from(size).unwrap_or(0));
        assert!(a.exists(name).await.unwrap_or_else(|e| panic!("{e}")));
        let back = dir.path().join(format!("{name}.back"));
        let got = a
            .download(name, &back, 1 << 30)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(got, sent);
        assert!(
            std::fs::read(&back).unwrap_or_default() == bytes,
            "{name} differs"
        );
        // Locked in compliance mode until about six years from now.
        let key = format!("exports/acme/2026/{name}");
        let (mode, until) = s3.lock_of(&key).await;
        assert_eq!(mode.as_deref(), Some("COMPLIANCE"), "{name}");
        let year = until.unwrap_or_default().get(..4).map(str::to_owned);
        let in_six = time::OffsetDateTime::now_utc().year() + 6;
        assert!(
            year == Some((in_six - 1).to_string()) || year == Some(in_six.to_string()),
            "{name}: {year:?}"
        );
        // The bucket's owner cannot delete the locked version.
        let version = s3.version_of(&key).await;
        assert!(version.is_some(), "{name}: versioned");
        let refused = s3.delete(&key, version.as_deref()).await;
        assert_eq!(refused, 403, "{name}: a locked version cannot be deleted");
    }
    // A download larger than its cap is refused and leaves no file.
    let capped = dir.path().join("capped");
    match a.download("events.ndjson", &capped, 1024).await {
        Err(WitnessError::Malformed(m)) => assert!(m.contains("larger than"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(!capped.exists());
    // Something that is not there.
    match a
        .download("nothing.ndjson", &dir.path().join("n"), 1024)
        .await
    {
        Err(WitnessError::Refused(m)) => assert!(m.contains("404"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_unreachable_bucket_is_an_error() {
    let Some(s3) = LocalS3::start("archive_unreachable").await else {
        return;
    };
    // A port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("{e}"));
    let settings = s3.settings_at(&format!("http://{closed}/"), "x");
    let a = S3Archive::new(&settings).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let path = write(dir.path(), "m.json", b"{}");
    match a.upload("m.json", &path).await {
        Err(WitnessError::Unreachable(_)) => {}
        other => panic!("{other:?}"),
    }
    match a.exists("m.json").await {
        Err(WitnessError::Unreachable(_)) => {}
        other => panic!("{other:?}"),
    }
}
