//! An S3-compatible bucket as the off-site home of audit exports and
//! retention archives (`s3://bucket/prefix`): the export's files are
//! objects under the prefix, each locked in compliance mode until its
//! retain-until date, so the archive outlives the database and no one, the
//! bucket's owner included, can delete or shorten it before then.
//!
//! A file that fits in one part is one PUT with its `Content-MD5`; a
//! larger one is a multipart upload (the lock set when it is created), every
//! part with its own `Content-MD5`, aborted if any part fails. Downloads
//! stream into a file, capped. Signed like the witness's calls, over the
//! same client (no redirects, timeouts).

use std::io::{Read as _, Write as _};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use carapace_audit::witness::WitnessError;
use md5::Digest as _;

use super::{Answer, S3Witness, S3WitnessSettings, first};

/// Bytes per part of a multipart upload (S3 wants at least 5 MiB but for
/// the last; 10,000 parts of 8 MiB are 78 GiB).
pub const PART_BYTES: usize = 8 * 1024 * 1024;
/// Most parts S3 takes in one upload.
const MAX_PARTS: usize = 10_000;
/// Largest answer read for a control call (create, part, complete).
const MAX_CONTROL: usize = 64 * 1024;

/// The archive bucket.
#[derive(Debug)]
pub struct S3Archive {
    bucket: S3Witness,
}

impl S3Archive {
    /// The archive at `settings.bucket`/`settings.prefix`, objects locked
    /// for `settings.retention_days`. No call is made yet.
    pub fn new(settings: &S3WitnessSettings) -> Result<Self, WitnessError> {
        Ok(Self {
            bucket: S3Witness::new(settings)?,
        })
    }

    fn ok(answer: &Answer) -> Result<(), WitnessError> {
        // S3 may answer 200 to a completion that failed, with an <Error> body.
        if (200..300).contains(&answer.status)
            && !String::from_utf8_lossy(&answer.body).contains("<Error>")
        {
            Ok(())
        } else {
            Err(S3Witness::refusal(answer))
        }
    }

    /// Whether an object `name` (relative to the prefix) exists.
    pub async fn exists(&self, name: &str) -> Result<bool, WitnessError> {
        let url = self.bucket.url(&self.bucket.key(name))?;
        let answer = self.bucket.call("HEAD", url, &[], Vec::new(), 0).await?;
        match answer.status {
            200..=299 => Ok(true),
            404 => Ok(false),
            _ => Err(S3Witness::refusal(&answer)),
        }
    }

    /// Uploads the file at `path` as `name`, locked until the retention
    /// date; returns its size.
    pub async fn upload(&self, name: &str, path: &Path) -> Result<u64, WitnessError> {
        let io = |e: std::io::Error| WitnessError::Malformed(format!("{}: {e}", path.display()));
        let mut file = std::fs::File::open(path).map_err(io)?;
        let size = file.metadata().map_err(io)?.len();
        let first_part = read_part(&mut file).map_err(io)?;
        let until = self.bucket.retain_until()?;
        if first_part.len() < PART_BYTES {
            let version = self.put_whole(name, first_part, &until).await?;
            self.confirm_lock(name, version.as_deref()).await?;
            return Ok(size);
        }
        let upload = self.create_multipart(name, &until).await?;
        let uploaded = async {
            let mut parts = Vec::new();
            let mut part = first_part;
            while !part.is_empty() {
                if parts.len() == MAX_PARTS {
                    return Err(WitnessError::Malformed(
                        "file too large for one upload".into(),
                    ));
                }
                let number = parts.len() + 1;
                parts.push((number, self.put_part(name, &upload, number, part).await?));
                part = read_part(&mut file).map_err(io)?;
            }
            self.complete(name, &upload, &parts).await
        }
        .await;
        // The lock set when the upload was created, set again on the
        // completed version (a stand-in may not carry it over; S3 accepts
        // the same date again), then read back.
        let uploaded = match uploaded {
            Ok(version) => {
                self.lock(name, version.as_deref(), &until).await?;
                self.confirm_lock(name, version.as_deref()).await?;
                Ok(())
            }
            Err(e) => Err(e),
        };
        if uploaded.is_err() {
            // Best effort: an incomplete upload holds no object.
            let mut url = self.bucket.url(&self.bucket.key(name))?;
            url.query_pairs_mut().append_pair("uploadId", &upload);
            let _ = self
                .bucket
                .call("DELETE", url, &[], Vec::new(), MAX_CONTROL)
                .await;
        }
        uploaded.map(|()| size)
    }

    /// One PUT, locked; returns the version it made.
    async fn put_whole(
        &self,
        name: &str,
        body: Vec<u8>,
        until: &str,
    ) -> Result<Option<String>, WitnessError> {
        let headers = [
            ("content-md5", STANDARD.encode(md5::Md5::digest(&body))),
            ("x-amz-object-lock-mode", "COMPLIANCE".to_owned()),
            ("x-amz-object-lock-retain-until-date", until.to_owned()),
        ];
        let url = self.bucket.url(&self.bucket.key(name))?;
        let answer = self
            .bucket
            .call("PUT", url, &headers, body, MAX_CONTROL)
            .await?;
        Self::ok(&answer)?;
        Ok(answer.version)
    }

    /// Puts `version` of `name` under compliance retention until `until`.
    async fn lock(
        &self,
        name: &str,
        version: Option<&str>,
        until: &str,
    ) -> Result<(), WitnessError> {
        let mut url = self.bucket.url(&self.bucket.key(name))?;
        {
            let mut q = url.query_pairs_mut();
            q.append_key_only("retention");
            if let Some(v) = version {
                q.append_pair("versionId", v);
            }
        }
        let body = format!(
            "<Retention><Mode>COMPLIANCE</Mode><RetainUntilDate>{until}</RetainUntilDate></Retention>"
        )
        .into_bytes();
        let headers = [
            ("content-type", "application/xml".to_owned()),
            ("content-md5", STANDARD.encode(md5::Md5::digest(&body))),
        ];
        let answer = self
            .bucket
            .call("PUT", url, &headers, body, MAX_CONTROL)
            .await?;
        Self::ok(&answer)
    }

    /// Fails unless `version` of `name` reads back locked in compliance mode.
    async fn confirm_lock(&self, name: &str, version: Option<&str>) -> Result<(), WitnessError> {
        let mut url = self.bucket.url(&self.bucket.key(name))?;
        if let Some(v) = version {
            url.query_pairs_mut().append_pair("versionId", v);
        }
        let answer = self.bucket.call("HEAD", url, &[], Vec::new(), 0).await?;
        Self::ok(&answer)?;
        match answer.lock_mode.as_deref() {
            Some("COMPLIANCE") => Ok(()),
            other => Err(WitnessError::Refused(format!(
                "{name} is not locked in compliance mode ({other:?}): is Object Lock enabled on the bucket?"
            ))),
        }
    }

    async fn create_multipart(&self, name: &str, until: &str) -> Result<String, WitnessError> {
        let mut url = self.bucket.url(&self.bucket.key(name))?;
        url.query_pairs_mut().append_key_only("uploads");
        let headers = [
            ("x-amz-object-lock-mode", "COMPLIANCE".to_owned()),
            ("x-amz-object-lock-retain-until-date", until.to_owned()),
        ];
        let answer = self
            .bucket
            .call("POST", url, &headers, Vec::new(), MAX_CONTROL)
            .await?;
        Self::ok(&answer)?;
        first(&String::from_utf8_lossy(&answer.body), "UploadId")
            .ok_or_else(|| WitnessError::Malformed("no UploadId in the answer".into()))
    }

    async fn put_part(
        &self,
        name: &str,
        upload: &str,
        number: usize,
        body: Vec<u8>,
    ) -> Result<String, WitnessError> {
        let mut url = self.bucket.url(&self.bucket.key(name))?;
        url.query_pairs_mut()
            .append_pair("partNumber", &number.to_string())
            .append_pair("uploadId", upload);
        let headers = [("content-md5", STANDARD.encode(md5::Md5::digest(&body)))];
        let answer = self
            .bucket
            .call("PUT", url, &headers, body, MAX_CONTROL)
            .await?;
        Self::ok(&answer)?;
        answer
            .etag
            .ok_or_else(|| WitnessError::Malformed(format!("part {number}: no ETag")))
    }

    async fn complete(
        &self,
        name: &str,
        upload: &str,
        parts: &[(usize, String)],
    ) -> Result<Option<String>, WitnessError> {
        let mut url = self.bucket.url(&self.bucket.key(name))?;
        url.query_pairs_mut().append_pair("uploadId", upload);
        let mut xml = String::from("<CompleteMultipartUpload>");
        for (number, etag) in parts {
            let etag = etag
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;");
            xml.push_str(&format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>"
            ));
        }
        xml.push_str("</CompleteMultipartUpload>");
        let body = xml.into_bytes();
        let headers = [
            ("content-type", "application/xml".to_owned()),
            ("content-md5", STANDARD.encode(md5::Md5::digest(&body))),
        ];
        let answer = self
            .bucket
            .call("POST", url, &headers, body, MAX_CONTROL)
            .await?;
        Self::ok(&answer)?;
        Ok(answer.version)
    }

    /// Downloads `name` into the new file `path`, refusing more than `cap`
    /// bytes (the partial file is removed); returns its size.
    pub async fn download(&self, name: &str, path: &Path, cap: u64) -> Result<u64, WitnessError> {
        let io = |e: std::io::Error| WitnessError::Malformed(format!("{}: {e}", path.display()));
        let url = self.bucket.url(&self.bucket.key(name))?;
        let mut response = self
            .bucket
            .signed("GET", url, &[], Vec::new())?
            .timeout(std::time::Duration::from_secs(3600))
            .send()
            .await
            .map_err(|e| WitnessError::Unreachable(e.to_string()))?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let mut body = Vec::new();
            while let Ok(Some(chunk)) = response.chunk().await {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_CONTROL {
                    break;
                }
            }
            return Err(S3Witness::refusal(&Answer {
                status,
                etag: None,
                version: None,
                lock_mode: None,
                body,
            }));
        }
        let mut file = std::fs::File::create_new(path).map_err(io)?;
        let written = async {
            let mut size: u64 = 0;
            while let Some(chunk) = response
                .chunk()
                .await
                .map_err(|e| WitnessError::Unreachable(e.to_string()))?
            {
                size = size.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
                if size > cap {
                    return Err(WitnessError::Malformed(format!(
                        "{name} is larger than {cap} bytes"
                    )));
                }
                file.write_all(&chunk).map_err(io)?;
            }
            file.sync_all().map_err(io)?;
            Ok(size)
        }
        .await;
        if written.is_err() {
            let _ = std::fs::remove_file(path);
        }
        written
    }
}

/// Up to [`PART_BYTES`] from `file` (fewer only at its end).
fn read_part(file: &mut std::fs::File) -> std::io::Result<Vec<u8>> {
    let mut part = Vec::with_capacity(PART_BYTES);
    std::io::Read::by_ref(file)
        .take(u64::try_from(PART_BYTES).unwrap_or(u64::MAX))
        .read_to_end(&mut part)?;
    Ok(part)
}
