//! The KMS key provider against a local KMS (moto's server).

use std::sync::Arc;

use carapace_clinical::patient::PatientRepository as _;
use carapace_infra::SeaPatients;
use carapace_infra::kms::{KmsSealer, KmsSettings};
use carapace_phi_crypto::{SealError, SecretSealer as _};
use carapace_testkit::kms::LocalKms;
use sea_orm::{ConnectionTrait as _, DbBackend, Statement};

use super::marked;
use crate::support::{acc, keys, new_org, sqlite};

fn sealer(endpoint: &str, key_id: &str) -> Arc<KmsSealer> {
    let settings = KmsSettings {
        endpoint: endpoint.parse().unwrap_or_else(|e| panic!("{e}")),
        region: "us-east-1".into(),
        key_id: key_id.into(),
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        session_token: None,
        timeout: std::time::Duration::from_secs(5),
    };
    Arc::new(KmsSealer::new(&settings).unwrap_or_else(|e| panic!("{e}")))
}

async fn first_wrapped_dek(dir: &tempfile::TempDir) -> Vec<u8> {
    let raw = sea_orm::Database::connect(format!("sqlite://{}/carapace.db", dir.path().display()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let row = raw
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT wrapped_dek FROM org_keys LIMIT 1",
        ))
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no key row"));
    row.try_get("", "wrapped_dek")
        .unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test]
async fn kms_wraps_keys_bound_to_their_context_and_takes_over_by_rewrap() {
    let Some(mut local_kms) = LocalKms::start("kms_wraps_keys").await else {
        return;
    };
    let key_id = local_kms.create_key().await;
    let kms = sealer(&local_kms.endpoint, &key_id);

    let secret = b"thirty-two bytes of key material";
    let sealed = kms
        .seal(b"dek:org-a:1", secret)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(!sealed.windows(secret.len()).any(|w| w == secret));
    assert_eq!(
        kms.open(b"dek:org-a:1", &sealed).await.as_deref(),
        Ok(&secret[..])
    );
    assert_eq!(
        kms.open(b"dek:org-b:1", &sealed).await,
        Err(SealError::Open),
        "KMS itself refuses a key presented for another context"
    );
    let mut altered = sealed.clone();
    if let Some(b) = altered.last_mut() {
        *b ^= 1;
    }
    assert_eq!(
        kms.open(b"dek:org-a:1", &altered).await,
        Err(SealError::Open)
    );
    let other_key = sealer(&local_kms.endpoint, &local_kms.create_key().await);
    assert!(
        other_key.seal(b"x", b"y").await.is_ok(),
        "a second KMS key works"
    );
    assert_eq!(
        kms.open(b"dek:org-a:1", b"\x01not a kms value").await,
        Err(SealError::Open),
        "a local-format value is refused without a call"
    );

    // Data keys made under the local KEK move to KMS (keys rotate --kek-kms-key-id).
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let db = sqlite(&dir).await;
    let local = keys(&db);
    let ctx = new_org(&db).await;
    let patient = SeaPatients::new(db.clone(), local.clone())
        .create(&acc(&ctx), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        local
            .rewrap(&ctx, &*kms)
            .await
            .unwrap_or_else(|e| panic!("{e}")),
        1
    );
    assert_eq!(
        first_wrapped_dek(&dir).await.first(),
        Some(&0x4b),
        "stored in KMS format"
    );
    let ring = Arc::new(carapace_infra::keys::KeyRing::with_ttl(
        db.clone(),
        kms.clone(),
        std::time::Duration::from_millis(200),
    ));
    let under_kms = SeaPatients::new(db.clone(), ring);
    assert_eq!(
        under_kms
            .get(&acc(&ctx), patient.id)
            .await
            .ok()
            .flatten()
            .map(|p| p.demographics),
        Some(marked())
    );
    // A new organization's key is created and wrapped by KMS.
    let fresh = new_org(&db).await;
    let created = under_kms
        .create(&acc(&fresh), &marked(), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));

    // KMS down: past the key TTL, PHI access is unavailable, never wrong.
    local_kms.stop();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(
        kms.seal(b"x", b"y").await,
        Err(SealError::Key),
        "an unreachable KMS is an outage"
    );
    let err = under_kms
        .get(&acc(&fresh), created.id)
        .await
        .err()
        .map(|e| e.code());
    assert_eq!(err, Some("storage_unavailable"));
}
