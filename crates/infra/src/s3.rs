//! An S3-compatible bucket with Object Lock as the audit witness (feature
//! `s3`; AWS S3, MinIO, moto and others speak it).
//!
//! Each checkpoint is one object, `<prefix>/<org>/<position:020>-<kind>.json`,
//! PUT with `x-amz-object-lock-mode: COMPLIANCE` and a retain-until date
//! (the audit retention by default), and `Content-MD5` as Object Lock
//! requires. In compliance mode no one, the bucket's owner included, can
//! delete a version or shorten its retention before that date. The bucket
//! must have been created with Object Lock enabled (which also turns
//! versioning on).
//!
//! Reading lists every *version* of every object (ListObjectVersions), not
//! just the latest ones: an object written again under the same name, or
//! hidden behind a delete marker, still shows (and the marker is reported).
//! Calls are signed with SigV4 like the KMS provider's, over a client that
//! follows no redirects, with timeouts and capped answers.

use std::time::Duration;

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SigningSettings, UriPathNormalizationMode,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use carapace_audit::chain::Checkpoint;
use carapace_audit::witness::{Listed, Witness, WitnessError, WitnessFuture, encode, object_name};
use carapace_tenancy::OrgId;
use md5::Digest as _;
use secrecy::SecretString;
use time::OffsetDateTime;
use url::Url;

use crate::aws::{AwsClient, AwsIdentity};

pub mod archive;
pub use archive::S3Archive;

/// Largest listing page read (1000 entries are well under this).
const MAX_LISTING: usize = 4 * 1024 * 1024;
/// Largest object read (a checkpoint is about 300 bytes).
const MAX_OBJECT: usize = 64 * 1024;

/// Where and as whom to write the witness.
#[derive(Clone)]
pub struct S3WitnessSettings {
    /// `https://s3.<region>.amazonaws.com`, or a stand-in's URL.
    pub endpoint: Url,
    /// `https://endpoint/bucket/key` (MinIO, moto) rather than
    /// `https://bucket.endpoint/key` (AWS).
    pub path_style: bool,
    /// The bucket (created with Object Lock enabled).
    pub bucket: String,
    /// The key prefix (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// Signing region.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: SecretString,
    /// Session token of temporary credentials.
    pub session_token: Option<SecretString>,
    /// Days each object is locked for (compliance mode).
    pub retention_days: u32,
    /// Per-call timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for S3WitnessSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3WitnessSettings")
            .field("endpoint", &self.endpoint.as_str())
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The S3 witness.
pub struct S3Witness {
    aws: AwsClient,
    endpoint: Url,
    path_style: bool,
    bucket: String,
    prefix: String,
    retention: time::Duration,
}

impl std::fmt::Debug for S3Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Witness")
            .field("endpoint", &self.endpoint.as_str())
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// A call's answer.
struct Answer {
    status: u16,
    /// The `ETag` header (an uploaded part's, for its completion).
    etag: Option<String>,
    /// The `x-amz-version-id` header (the version a write made).
    version: Option<String>,
    /// The `x-amz-object-lock-mode` header (a HEAD's).
    lock_mode: Option<String>,
    body: Vec<u8>,
}

impl S3Witness {
    /// A witness writing to `settings.bucket`. No call is made yet.
    pub fn new(settings: &S3WitnessSettings) -> Result<Self, WitnessError> {
        let identity = AwsIdentity {
            access_key_id: &settings.access_key_id,
            secret_access_key: &settings.secret_access_key,
            session_token: settings.session_token.as_ref(),
        };
        let mut signing = SigningSettings::default();
        signing.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        signing.percent_encoding_mode = PercentEncodingMode::Single;
        signing.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let aws = AwsClient::new("s3", &settings.region, &identity, signing, settings.timeout)
            .map_err(|e| WitnessError::Malformed(format!("client: {e}")))?;
        Ok(Self {
            aws,
            endpoint: settings.endpoint.clone(),
            path_style: settings.path_style,
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.trim_matches('/').to_owned(),
            retention: time::Duration::days(settings.retention_days.into()),
        })
    }

    /// The full key of a name relative to the prefix.
    fn key(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{}/{name}", self.prefix)
        }
    }

    /// The name relative to the prefix of a full key.
    fn name<'k>(&self, key: &'k str) -> &'k str {
        if self.prefix.is_empty() {
            key
        } else {
            key.strip_prefix(&self.prefix)
                .and_then(|k| k.strip_prefix('/'))
                .unwrap_or(key)
        }
    }

    /// The URL of `key` in the bucket (`key` empty: the bucket itself).
    fn url(&self, key: &str) -> Result<Url, WitnessError> {
        let mut url = self.endpoint.clone();
        let bad = |_| WitnessError::Malformed("endpoint cannot carry a path".into());
        if self.path_style {
            url.path_segments_mut()
                .map_err(bad)?
                .pop_if_empty()
                .push(&self.bucket)
                .extend(key.split('/').filter(|s| !s.is_empty()));
        } else {
            let host = format!("{}.{}", self.bucket, url.host_str().unwrap_or_default());
            url.set_host(Some(&host))
                .map_err(|e| WitnessError::Malformed(format!("bucket host: {e}")))?;
            url.set_path("/");
            url.path_segments_mut()
                .map_err(bad)?
                .pop_if_empty()
                .extend(key.split('/').filter(|s| !s.is_empty()));
        }
        Ok(url)
    }

    /// One signed call; a network failure is [`WitnessError::Unreachable`],
    /// an answer over `cap` bytes [`WitnessError::Malformed`].
    async fn call(
        &self,
        method: &str,
        url: Url,
        headers: &[(&str, String)],
        body: Vec<u8>,
        cap: usize,
    ) -> Result<Answer, WitnessError> {
        let mut response = self
            .signed(method, url, headers, body)?
            .send()
            .await
            .map_err(|e| WitnessError::Unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (etag, version, lock_mode) = (
            header("etag"),
            header("x-amz-version-id"),
            header("x-amz-object-lock-mode"),
        );
        let mut answer = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| WitnessError::Unreachable(e.to_string()))?
        {
            answer.extend_from_slice(&chunk);
            if answer.len() > cap {
                return Err(WitnessError::Malformed("answer too large".into()));
            }
        }
        Ok(Answer {
            status,
            etag,
            version,
            lock_mode,
            body: answer,
        })
    }

    /// The request, signed with SigV4 (not sent).
    fn signed(
        &self,
        method: &str,
        url: Url,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<reqwest::RequestBuilder, WitnessError> {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.aws
            .signed(method, url, &headers, body)
            .map_err(|e| WitnessError::Malformed(format!("signing: {e}")))
    }

    /// A non-2xx answer as an error naming the status and S3's code.
    fn refusal(answer: &Answer) -> WitnessError {
        let text = String::from_utf8_lossy(&answer.body);
        let code = first(&text, "Code").unwrap_or_default();
        WitnessError::Refused(format!("status {} {code}", answer.status))
    }

    /// The retain-until date of an object written now (RFC 3339).
    fn retain_until(&self) -> Result<String, WitnessError> {
        (OffsetDateTime::now_utc() + self.retention)
            .replace_nanosecond(0)
            .unwrap_or_else(|_| OffsetDateTime::now_utc())
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| WitnessError::Malformed(e.to_string()))
    }

    async fn write(&self, checkpoint: &Checkpoint) -> Result<(), WitnessError> {
        let body = encode(checkpoint);
        let until = self.retain_until()?;
        let headers = [
            ("content-type", "application/json".to_owned()),
            ("content-md5", STANDARD.encode(md5::Md5::digest(&body))),
            ("x-amz-object-lock-mode", "COMPLIANCE".to_owned()),
            ("x-amz-object-lock-retain-until-date", until),
        ];
        let url = self.url(&self.key(&object_name(checkpoint)))?;
        let answer = self.call("PUT", url, &headers, body, MAX_OBJECT).await?;
        if (200..300).contains(&answer.status) {
            Ok(())
        } else {
            Err(Self::refusal(&answer))
        }
    }

    /// Every page of ListObjectVersions under `prefix` (with `delimiter`).
    async fn versions(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
    ) -> Result<Vec<String>, WitnessError> {
        let mut pages = Vec::new();
        let mut markers: Option<(String, Option<String>)> = None;
        loop {
            let mut url = self.url("")?;
            {
                let mut q = url.query_pairs_mut();
                q.append_key_only("versions");
                q.append_pair("prefix", prefix);
                if let Some(d) = delimiter {
                    q.append_pair("delimiter", d);
                }
                if let Some((key, version)) = &markers {
                    q.append_pair("key-marker", key);
                    if let Some(v) = version {
                        q.append_pair("version-id-marker", v);
                    }
                }
            }
            let answer = self.call("GET", url, &[], Vec::new(), MAX_LISTING).await?;
            if !(200..300).contains(&answer.status) {
                return Err(Self::refusal(&answer));
            }
            let page = String::from_utf8(answer.body)
                .map_err(|_| WitnessError::Malformed("listing is not UTF-8".into()))?;
            let truncated = first(&page, "IsTruncated").as_deref() == Some("true");
            let next = first(&page, "NextKeyMarker");
            let next_version = first(&page, "NextVersionIdMarker");
            pages.push(page);
            match (truncated, next) {
                (true, Some(key)) => {
                    let again = Some((key, next_version));
                    if again == markers {
                        return Err(WitnessError::Malformed("listing does not advance".into()));
                    }
                    markers = again;
                }
                (true, None) => {
                    return Err(WitnessError::Malformed(
                        "truncated listing without a marker".into(),
                    ));
                }
                (false, _) => return Ok(pages),
            }
        }
    }

    async fn everything(&self, org: OrgId) -> Result<Vec<Listed>, WitnessError> {
        let prefix = format!("{}/", self.key(&org.to_string()));
        let mut out = Vec::new();
        for page in self.versions(&prefix, None).await? {
            for (tag, delete_marker) in [("DeleteMarker", true), ("Version", false)] {
                for block in blocks(&page, tag) {
                    let key = first(block, "Key").unwrap_or_default();
                    // A plain MD5 is 32 hex digits; multipart and KMS
                    // ETags are not, and are then no digest of the bytes.
                    let etag = first(block, "ETag")
                        .map(|e| e.trim_matches('"').to_ascii_lowercase())
                        .filter(|e| e.len() == 32 && e.bytes().all(|b| b.is_ascii_hexdigit()));
                    out.push(Listed {
                        name: self.name(&key).to_owned(),
                        version: first(block, "VersionId").filter(|v| v != "null"),
                        etag,
                        delete_marker,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn fetch(&self, name: &str, version: Option<&str>) -> Result<Vec<u8>, WitnessError> {
        let mut url = self.url(&self.key(name))?;
        if let Some(v) = version {
            url.query_pairs_mut().append_pair("versionId", v);
        }
        let answer = self.call("GET", url, &[], Vec::new(), MAX_OBJECT).await?;
        if (200..300).contains(&answer.status) {
            Ok(answer.body)
        } else {
            Err(Self::refusal(&answer))
        }
    }

    async fn org_names(&self) -> Result<Vec<String>, WitnessError> {
        let prefix = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        let mut names = Vec::new();
        for page in self.versions(&prefix, Some("/")).await? {
            for block in blocks(&page, "CommonPrefixes") {
                if let Some(p) = first(block, "Prefix") {
                    let name = self.name(&p).trim_end_matches('/').to_owned();
                    if !names.contains(&name) {
                        names.push(name);
                    }
                }
            }
        }
        Ok(names)
    }
}

impl Witness for S3Witness {
    fn put<'a>(&'a self, checkpoint: &'a Checkpoint) -> WitnessFuture<'a, ()> {
        Box::pin(self.write(checkpoint))
    }

    fn list(&self, org: OrgId) -> WitnessFuture<'_, Vec<Listed>> {
        Box::pin(self.everything(org))
    }

    fn get<'a>(&'a self, name: &'a str, version: Option<&'a str>) -> WitnessFuture<'a, Vec<u8>> {
        Box::pin(self.fetch(name, version))
    }

    fn orgs(&self) -> WitnessFuture<'_, Vec<String>> {
        Box::pin(self.org_names())
    }
}

/// The inner text of each `<tag>…</tag>` in `xml` (S3's answers do not
/// nest an element in one of the same name).
fn blocks<'x>(xml: &'x str, tag: &str) -> Vec<&'x str> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

/// The unescaped text of the first `<tag>…</tag>` in `xml`.
fn first(xml: &str, tag: &str) -> Option<String> {
    blocks(xml, tag).first().map(|t| {
        t.replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn witness(path_style: bool, prefix: &str) -> S3Witness {
        S3Witness::new(&S3WitnessSettings {
            endpoint: Url::parse("https://s3.eu-west-1.amazonaws.com")
                .unwrap_or_else(|e| panic!("{e}")),
            path_style,
            bucket: "audit-witness".into(),
            prefix: prefix.into(),
            region: "eu-west-1".into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: SecretString::from("secret"),
            session_token: None,
            retention_days: 2190,
            timeout: Duration::from_secs(5),
        })
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn keys_go_under_the_prefix_in_either_addressing_style() {
        let w = witness(false, "/carapace/prod/");
        assert_eq!(w.key("o/1-head.json"), "carapace/prod/o/1-head.json");
        assert_eq!(w.name("carapace/prod/o/1-head.json"), "o/1-head.json");
        assert_eq!(
            w.url(&w.key("o/1-head.json"))
                .map(String::from)
                .ok()
                .as_deref(),
            Some("https://audit-witness.s3.eu-west-1.amazonaws.com/carapace/prod/o/1-head.json")
        );
        assert_eq!(
            w.url("").map(String::from).ok().as_deref(),
            Some("https://audit-witness.s3.eu-west-1.amazonaws.com/")
        );
        let p = witness(true, "");
        assert_eq!(p.key("o/1-head.json"), "o/1-head.json");
        assert_eq!(
            p.url("o/1-head.json").map(String::from).ok().as_deref(),
            Some("https://s3.eu-west-1.amazonaws.com/audit-witness/o/1-head.json")
        );
        assert_eq!(
            p.url("").map(String::from).ok().as_deref(),
            Some("https://s3.eu-west-1.amazonaws.com/audit-witness")
        );
    }

    #[test]
    fn listings_are_read_by_element() {
        let page = "<ListVersionsResult><IsTruncated>true</IsTruncated><NextKeyMarker>a&amp;b</NextKeyMarker>\
            <Version><Key>p/k1</Key><VersionId>v1</VersionId></Version>\
            <DeleteMarker><Key>p/k1</Key><VersionId>d1</VersionId></DeleteMarker>\
            <Version><Key>p/k2</Key><VersionId>null</VersionId></Version></ListVersionsResult>";
        assert_eq!(first(page, "IsTruncated").as_deref(), Some("true"));
        assert_eq!(first(page, "NextKeyMarker").as_deref(), Some("a&b"));
        assert_eq!(first(page, "NextVersionIdMarker"), None);
        let versions: Vec<Option<String>> = blocks(page, "Version")
            .into_iter()
            .map(|b| first(b, "VersionId"))
            .collect();
        assert_eq!(versions, vec![Some("v1".into()), Some("null".into())]);
        assert_eq!(blocks(page, "DeleteMarker").len(), 1);
    }
}
