//! AWS KMS, or any service speaking its JSON API (LocalStack, moto), as the
//! key provider (feature `kms`). The key-encryption key never leaves KMS:
//! sealing is a signed (SigV4) `Encrypt` call, opening a `Decrypt` call,
//! and the caller's context travels as the KMS encryption context, so KMS
//! itself refuses a wrapped key presented for another org, version or
//! purpose.

use std::time::Duration;

use aws_sigv4::http_request::SigningSettings;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use carapace_phi_crypto::{SealError, SealFuture, SecretSealer};
use secrecy::SecretString;
use url::Url;
use zeroize::Zeroizing;

use crate::aws::{AwsClient, AwsIdentity};

/// First byte of every value this provider seals, so a value from another
/// provider is refused before any call is made.
const FORMAT: u8 = 0x4b;
/// The encryption-context key carrying Carapace's binding context.
const CONTEXT_KEY: &str = "carapace-context";
/// Largest KMS response read (a `Decrypt` answer is well under 10 KiB).
const MAX_RESPONSE: usize = 64 * 1024;

/// Where and as whom to call KMS.
#[derive(Clone)]
pub struct KmsSettings {
    /// `https://kms.<region>.amazonaws.com`, or a local stand-in.
    pub endpoint: Url,
    /// Signing region, e.g. `eu-west-1`.
    pub region: String,
    /// Key id, ARN or alias of the key-encryption key.
    pub key_id: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: SecretString,
    /// Session token of temporary credentials.
    pub session_token: Option<SecretString>,
    /// Per-call timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for KmsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsSettings")
            .field("endpoint", &self.endpoint.as_str())
            .field("region", &self.region)
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// The KMS key provider.
pub struct KmsSealer {
    aws: AwsClient,
    endpoint: Url,
    key_id: String,
}

impl std::fmt::Debug for KmsSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsSealer")
            .field("endpoint", &self.endpoint.as_str())
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl KmsSealer {
    /// A provider calling `settings.endpoint`. No call is made yet.
    pub fn new(settings: &KmsSettings) -> Result<Self, reqwest::Error> {
        let identity = AwsIdentity {
            access_key_id: &settings.access_key_id,
            secret_access_key: &settings.secret_access_key,
            session_token: settings.session_token.as_ref(),
        };
        Ok(Self {
            aws: AwsClient::new(
                "kms",
                &settings.region,
                &identity,
                SigningSettings::default(),
                settings.timeout,
            )?,
            endpoint: settings.endpoint.clone(),
            key_id: settings.key_id.clone(),
        })
    }

    fn context(context: &[u8]) -> serde_json::Value {
        serde_json::json!({ CONTEXT_KEY: URL_SAFE_NO_PAD.encode(context) })
    }

    async fn encrypt(&self, context: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
        let body = serde_json::json!({
            "KeyId": self.key_id,
            "Plaintext": STANDARD.encode(plaintext),
            "EncryptionContext": Self::context(context),
        });
        let answer = self.call("Encrypt", &body).await?;
        let blob = answer
            .get("CiphertextBlob")
            .and_then(|b| b.as_str())
            .and_then(|b| STANDARD.decode(b).ok())
            .ok_or(SealError::Key)?;
        let mut out = Vec::with_capacity(1 + blob.len());
        out.push(FORMAT);
        out.extend_from_slice(&blob);
        Ok(out)
    }

    async fn decrypt(&self, context: &[u8], sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        let blob = match sealed.split_first() {
            Some((&FORMAT, blob)) if !blob.is_empty() => blob,
            _ => return Err(SealError::Open),
        };
        let body = serde_json::json!({
            "KeyId": self.key_id,
            "CiphertextBlob": STANDARD.encode(blob),
            "EncryptionContext": Self::context(context),
        });
        let answer = self.call("Decrypt", &body).await?;
        answer
            .get("Plaintext")
            .and_then(|p| p.as_str())
            .and_then(|p| STANDARD.decode(p).ok())
            .ok_or(SealError::Key)
    }

    /// One signed KMS JSON call. A refused ciphertext (wrong context, key
    /// or bytes) is [`SealError::Open`]; anything else, from a network
    /// error to throttling, is [`SealError::Key`] (the provider is
    /// unavailable).
    async fn call(
        &self,
        operation: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, SealError> {
        let body = Zeroizing::new(serde_json::to_vec(body).map_err(|_| SealError::Key)?);
        let target = format!("TrentService.{operation}");
        let headers = [
            ("content-type", "application/x-amz-json-1.1"),
            ("x-amz-target", target.as_str()),
        ];
        let request = self
            .aws
            .signed("POST", self.endpoint.clone(), &headers, body.to_vec())
            .map_err(|_| SealError::Key)?;
        let response = request.send().await.map_err(|e| {
            tracing::warn!(operation, error = %e, "KMS unreachable");
            SealError::Key
        })?;
        let status = response.status();
        if response
            .content_length()
            .is_some_and(|n| n > u64::try_from(MAX_RESPONSE).unwrap_or(u64::MAX))
        {
            return Err(SealError::Key);
        }
        let bytes = response.bytes().await.map_err(|_| SealError::Key)?;
        if bytes.len() > MAX_RESPONSE {
            return Err(SealError::Key);
        }
        let answer: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|_| SealError::Key)?;
        if status.is_success() {
            return Ok(answer);
        }
        let kind = answer
            .get("__type")
            .and_then(|t| t.as_str())
            .unwrap_or("unknown");
        tracing::warn!(operation, status = status.as_u16(), kind, "KMS refused");
        if status.is_client_error()
            && (kind.ends_with("InvalidCiphertextException")
                || kind.ends_with("IncorrectKeyException"))
        {
            Err(SealError::Open)
        } else {
            Err(SealError::Key)
        }
    }
}

impl SecretSealer for KmsSealer {
    fn seal<'a>(&'a self, context: &'a [u8], plaintext: &'a [u8]) -> SealFuture<'a> {
        Box::pin(self.encrypt(context, plaintext))
    }

    fn open<'a>(&'a self, context: &'a [u8], sealed: &'a [u8]) -> SealFuture<'a> {
        Box::pin(self.decrypt(context, sealed))
    }
}
