//! A local stand-in for an S3 bucket with Object Lock: moto's server (the
//! one [`crate::kms::LocalKms`] starts), with a bucket created with Object
//! Lock enabled, for the audit witness's tests. moto enforces compliance
//! retention (a locked version cannot be deleted) and requires
//! `Content-MD5` with lock headers, like S3; it does not check signatures,
//! so the test's own calls (the attacker's) go unsigned.

use std::time::Duration;

use carapace_infra::s3::{S3Witness, S3WitnessSettings};
use url::Url;

use crate::kms::LocalKms;

/// A running moto server with one Object Lock bucket.
#[derive(Debug)]
pub struct LocalS3 {
    moto: LocalKms,
    /// The bucket.
    pub bucket: String,
    http: reqwest::Client,
}

/// moto refuses anonymous object calls; it reads, and does not check, a
/// signature.
const UNCHECKED: &str = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

impl LocalS3 {
    /// Starts moto (see [`LocalKms::start`]) and creates the bucket; `None`
    /// after a SKIP line when moto is not installed.
    pub async fn start(test: &str) -> Option<Self> {
        let moto = LocalKms::start(test).await?;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let s3 = Self {
            moto,
            bucket: "carapace-witness".into(),
            http: reqwest::Client::new(),
        };
        let created = s3
            .http
            .put(s3.url(""))
            .header("authorization", UNCHECKED)
            .header("x-amz-bucket-object-lock-enabled", "true")
            .send()
            .await
            .unwrap_or_else(|e| panic!("{test}: local S3: {e}"));
        assert!(created.status().is_success(), "{test}: creating the bucket");
        Some(s3)
    }

    /// moto's endpoint, `http://127.0.0.1:<port>/`.
    pub fn endpoint(&self) -> &str {
        &self.moto.endpoint
    }

    /// The URL of `key` in the bucket (path style).
    pub fn url(&self, key: &str) -> String {
        format!("{}{}/{key}", self.moto.endpoint, self.bucket)
    }

    /// Witness settings for this bucket under `prefix`, at `endpoint`
    /// (moto's own, or a relay in front of it).
    pub fn settings_at(&self, endpoint: &str, prefix: &str) -> S3WitnessSettings {
        S3WitnessSettings {
            endpoint: Url::parse(endpoint).unwrap_or_else(|e| panic!("{e}")),
            path_style: true,
            bucket: self.bucket.clone(),
            prefix: prefix.into(),
            region: "us-east-1".into(),
            access_key_id: "test".into(),
            secret_access_key: "test".to_owned().into(),
            session_token: None,
            retention_days: 2190,
            timeout: Duration::from_secs(2),
        }
    }

    /// The witness for this bucket under `prefix`.
    pub fn witness(&self, prefix: &str) -> S3Witness {
        S3Witness::new(&self.settings_at(&self.moto.endpoint, prefix))
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every key under `prefix` (latest versions, ListObjectsV2).
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let page = self
            .http
            .get(format!(
                "{}{}?list-type=2&prefix={prefix}",
                self.moto.endpoint, self.bucket
            ))
            .header("authorization", UNCHECKED)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .text()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        page.split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next())
            .map(str::to_owned)
            .collect()
    }

    /// The headers S3 answers a `HEAD` of `key` with.
    async fn head(&self, key: &str) -> reqwest::header::HeaderMap {
        self.http
            .head(self.url(key))
            .header("authorization", UNCHECKED)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .headers()
            .clone()
    }

    /// The lock S3 reports on `key`'s latest version: (mode, retain until).
    pub async fn lock_of(&self, key: &str) -> (Option<String>, Option<String>) {
        let head = self.head(key).await;
        (
            header(&head, "x-amz-object-lock-mode"),
            header(&head, "x-amz-object-lock-retain-until-date"),
        )
    }

    /// The latest version id of `key`.
    pub async fn version_of(&self, key: &str) -> Option<String> {
        header(&self.head(key).await, "x-amz-version-id")
    }

    /// Writes `body` under `key` without a lock (someone holding write
    /// access to the bucket); returns the status.
    pub async fn put_raw(&self, key: &str, body: &[u8]) -> u16 {
        self.http
            .put(self.url(key))
            .header("authorization", UNCHECKED)
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .status()
            .as_u16()
    }

    /// Deletes `key` (a specific `version`, or the latest with a delete
    /// marker); returns the status.
    pub async fn delete(&self, key: &str, version: Option<&str>) -> u16 {
        let url = match version {
            Some(v) => format!("{}?versionId={v}", self.url(key)),
            None => self.url(key),
        };
        self.http
            .delete(url)
            .header("authorization", UNCHECKED)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .status()
            .as_u16()
    }

    /// moto's `host:port`, for a relay in front of it.
    pub fn authority(&self) -> String {
        let url = Url::parse(&self.moto.endpoint).unwrap_or_else(|e| panic!("{e}"));
        format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port().unwrap_or_default()
        )
    }
}

/// The header `name` of `head`, if it is text.
fn header(head: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    head.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
