//! Offline-verifiable exports of a stretch of an organization's chain:
//! `events.ndjson` (one chain position per line, with the event's exact
//! canonical bytes) and `manifest.json` (counts, the file's hash, the chain
//! anchors before and after, the signed checkpoints inside), the manifest
//! signed with the audit key. [`verify_export`] needs only the files and
//! the public key.

use carapace_tenancy::OrgId;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::chain::{Hash, hex, leaf_hash, link_hash};
use crate::event::AuditEvent;

/// The events file's name.
pub const EVENTS_FILE: &str = "events.ndjson";
/// The manifest's name.
pub const MANIFEST_FILE: &str = "manifest.json";

/// One line of `events.ndjson`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportLine {
    /// Chain position.
    pub position: u64,
    /// Leaf hash (hex).
    pub leaf: String,
    /// Link (hex).
    pub link: String,
    /// The event's canonical JSON, exactly as hashed.
    pub event: String,
}

/// A checkpoint inside the exported range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportedCheckpoint {
    /// Its position.
    pub position: u64,
    /// Its link (hex).
    pub link: String,
    /// When it was signed (Unix seconds).
    pub signed_at: i64,
    /// Its signature (hex).
    pub signature: String,
}

/// What the manifest states; signed as its JSON bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestBody {
    /// Format version.
    pub format: u32,
    /// The organization.
    pub org: OrgId,
    /// The requested time range (RFC 3339), as given.
    pub from: String,
    /// End of the range (exclusive).
    pub to: String,
    /// First exported position (0 and `count` 0 when empty).
    pub first_position: u64,
    /// Last exported position.
    pub last_position: u64,
    /// Lines in `events.ndjson`.
    pub count: u64,
    /// The link before the first position (hex): the chain anchor.
    pub prev_link: String,
    /// The link at the last position (hex).
    pub last_link: String,
    /// SHA-256 of `events.ndjson` (hex).
    pub events_sha256: String,
    /// Signed checkpoints within the range.
    pub checkpoints: Vec<ExportedCheckpoint>,
    /// The public key that signs (hex), for the reader's information; the
    /// verifier uses its own trusted copy.
    pub public_key: String,
}

/// A signed manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The statement.
    pub body: ManifestBody,
    /// Ed25519 over the body's JSON bytes (hex).
    pub signature: String,
}

impl Manifest {
    /// Signs `body`.
    pub fn sign(body: ManifestBody, key: &SigningKey) -> Self {
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        Self {
            signature: bytes_hex(&key.sign(&bytes).to_bytes()),
            body,
        }
    }

    /// Whether `key` signed this body.
    pub fn is_signed_by(&self, key: &VerifyingKey) -> bool {
        let Some(sig) = unhex(&self.signature).and_then(|s| <[u8; 64]>::try_from(s).ok()) else {
            return false;
        };
        let bytes = serde_json::to_vec(&self.body).unwrap_or_default();
        key.verify(&bytes, &Signature::from_bytes(&sig)).is_ok()
    }
}

/// Lower-case hex of any bytes.
pub fn bytes_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses lower- or upper-case hex.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok()))
        .collect()
}

fn hash_hex(s: &str) -> Option<Hash> {
    unhex(s).and_then(|v| v.try_into().ok())
}

/// SHA-256 of the events file, hex.
pub fn file_sha256(bytes: &[u8]) -> String {
    bytes_hex(&Sha256::digest(bytes))
}

/// The line for a chain entry.
pub fn line(position: u64, leaf: &Hash, link: &Hash, canonical: &[u8]) -> ExportLine {
    ExportLine {
        position,
        leaf: hex(leaf),
        link: hex(link),
        event: String::from_utf8_lossy(canonical).into_owned(),
    }
}

/// What is wrong with an export.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExportProblem {
    /// The events file could not be read to its end.
    #[error("the events file could not be read: {0}")]
    Unreadable(String),
    /// The manifest's signature does not verify.
    #[error("manifest signature invalid")]
    BadManifestSignature,
    /// The events file is not the one the manifest names.
    #[error("events file hash differs from the manifest")]
    FileHashMismatch,
    /// A line is not valid.
    #[error("line {line} (position {position}): {what}")]
    BadLine {
        /// 1-based line number.
        line: u64,
        /// The position it should hold.
        position: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// Lines are missing or extra.
    #[error("{found} lines, the manifest says {expected}")]
    Count {
        /// Stated.
        expected: u64,
        /// Present.
        found: u64,
    },
    /// The chain does not end where the manifest says.
    #[error("the last link differs from the manifest")]
    LastLink,
    /// A checkpoint inside the range does not match or is not signed.
    #[error("checkpoint at position {0} does not match or is not signed")]
    Checkpoint(u64),
    /// The chain in the database does not resume where the archive ends.
    #[error("the archive ends at position {ends} but the chain resumes after position {resumes}")]
    Disjoint {
        /// The archive's last position.
        ends: u64,
        /// Where the stored chain's tombstone says it resumes.
        resumes: u64,
    },
}

/// Whether the archive `manifest` (already verified) ends exactly where the
/// stored chain resumes: at the tombstone's position, with its link. Then
/// the archive and the remaining chain prove the organization's whole
/// trail together.
pub fn joins(manifest: &Manifest, resumes_after: u64, link: &Hash) -> Result<(), ExportProblem> {
    let body = &manifest.body;
    if body.last_position != resumes_after {
        return Err(ExportProblem::Disjoint {
            ends: body.last_position,
            resumes: resumes_after,
        });
    }
    if body.last_link != hex(link) {
        return Err(ExportProblem::LastLink);
    }
    Ok(())
}

/// Longest line of an events file, in bytes: a longer one is refused
/// before it is held whole.
pub const LINE_MAX: u64 = 1024 * 1024;

/// Verifies an export, reading its events file once, a line at a time (an
/// export of millions of events is never held whole): the manifest's
/// signature under `key`, every line's leaf and link from the manifest's
/// anchor (so a modified, removed, added or reordered line is named), the
/// file's hash, then the checkpoints inside. Returns the number of events.
pub fn verify_export(
    manifest: &Manifest,
    mut events: impl std::io::BufRead,
    key: &VerifyingKey,
) -> Result<u64, ExportProblem> {
    if !manifest.is_signed_by(key) {
        return Err(ExportProblem::BadManifestSignature);
    }
    let body = &manifest.body;
    let wanted: std::collections::HashSet<u64> =
        body.checkpoints.iter().map(|c| c.position).collect();
    // Lines are checked first so a changed line is named, not just "hash".
    let mut prev = hash_hex(&body.prev_link).ok_or(ExportProblem::LastLink)?;
    let mut count: u64 = 0;
    let mut links = std::collections::HashMap::new();
    let mut lines = Lines::new(&mut events);
    while lines.read()? {
        let expected = body.first_position + count;
        let Some(l) = lines.parsed(expected)? else {
            continue;
        };
        let bad = |what| lines.bad(expected, what);
        if l.position != expected {
            return Err(bad("out of sequence (a line was removed, added or moved)"));
        }
        let leaf = leaf_hash(l.event.as_bytes());
        if hash_hex(&l.leaf) != Some(leaf) {
            return Err(bad("event modified"));
        }
        match AuditEvent::from_canonical(l.event.as_bytes()) {
            Some(e) if e.org == body.org => {}
            _ => return Err(bad("event of another organization or unreadable")),
        }
        let link = link_hash(&prev, &leaf);
        if hash_hex(&l.link) != Some(link) {
            return Err(bad("chain link broken"));
        }
        if wanted.contains(&l.position) {
            links.insert(l.position, link);
        }
        prev = link;
        count += 1;
    }
    if count != body.count {
        return Err(ExportProblem::Count {
            expected: body.count,
            found: count,
        });
    }
    if count > 0 && hash_hex(&body.last_link) != Some(prev) {
        return Err(ExportProblem::LastLink);
    }
    lines.finish(manifest)?;
    for cp in &body.checkpoints {
        let checkpoint = crate::chain::Checkpoint {
            org: body.org,
            kind: crate::chain::CheckpointKind::Head,
            position: cp.position,
            link: hash_hex(&cp.link).ok_or(ExportProblem::Checkpoint(cp.position))?,
            signed_at: time::OffsetDateTime::from_unix_timestamp(cp.signed_at)
                .map_err(|_| ExportProblem::Checkpoint(cp.position))?,
            signature: unhex(&cp.signature)
                .and_then(|s| s.try_into().ok())
                .ok_or(ExportProblem::Checkpoint(cp.position))?,
        };
        if !checkpoint.is_signed_by(key) || links.get(&cp.position) != Some(&checkpoint.link) {
            return Err(ExportProblem::Checkpoint(cp.position));
        }
    }
    Ok(count)
}

/// An events file read a line at a time (at most [`LINE_MAX`] bytes a
/// line), hashed as it is read.
struct Lines<R> {
    events: R,
    hash: Sha256,
    raw: Vec<u8>,
    n: u64,
}

impl<R: std::io::BufRead> Lines<R> {
    fn new(events: R) -> Self {
        Self {
            events,
            hash: Sha256::new(),
            raw: Vec::new(),
            n: 0,
        }
    }

    /// Reads the next line; `false` at the end of the file.
    fn read(&mut self) -> Result<bool, ExportProblem> {
        use std::io::{BufRead as _, Read as _};
        self.raw.clear();
        let read = (&mut self.events)
            .take(LINE_MAX + 1)
            .read_until(b'\n', &mut self.raw)
            .map_err(|e| ExportProblem::Unreadable(e.kind().to_string()))?;
        self.hash.update(&self.raw);
        self.n += 1;
        Ok(read > 0)
    }

    /// The line just read (`expected`: the position it should hold, for
    /// the problem's message); `None` for an empty line.
    fn parsed(&self, expected: u64) -> Result<Option<ExportLine>, ExportProblem> {
        let bad = |what| self.bad(expected, what);
        if u64::try_from(self.raw.len()).unwrap_or(u64::MAX) > LINE_MAX {
            return Err(bad("longer than any event"));
        }
        let line = self.raw.strip_suffix(b"\n").unwrap_or(&self.raw);
        if line.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(line)
            .map(Some)
            .map_err(|_| bad("not a valid line"))
    }

    /// What is wrong with the line just read (`expected`: the position it
    /// should hold).
    fn bad(&self, expected: u64, what: &'static str) -> ExportProblem {
        ExportProblem::BadLine {
            line: self.n,
            position: expected,
            what,
        }
    }

    /// Reads the rest of the file; whether all of it hashes as `manifest`
    /// says.
    fn finish(mut self, manifest: &Manifest) -> Result<(), ExportProblem> {
        while self.read()? {}
        if bytes_hex(&self.hash.finalize()) != manifest.body.events_sha256 {
            return Err(ExportProblem::FileHashMismatch);
        }
        Ok(())
    }
}

/// The links of an events file that [`verify_export`] passed, read again
/// in order, a line at a time (a purge compares them with the stored chain
/// without holding the file). [`ExportLinks::finish`] reads the rest and
/// checks the file still hashes as the manifest says: what was compared is
/// what was verified, even if the file was replaced in between.
pub struct ExportLinks<R> {
    lines: Lines<R>,
}

impl<R: std::io::BufRead> ExportLinks<R> {
    /// Reads `events` from its start.
    pub fn new(events: R) -> Self {
        Self {
            lines: Lines::new(events),
        }
    }

    /// The link (hex) the file holds at `position`, reading past earlier
    /// positions; `None` when the file holds none there (it ended, or
    /// skips it).
    pub fn link_at(&mut self, position: u64) -> Result<Option<String>, ExportProblem> {
        while self.lines.read()? {
            let Some(l) = self.lines.parsed(position)? else {
                continue;
            };
            match l.position.cmp(&position) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => return Ok(Some(l.link)),
                std::cmp::Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Reads the rest; whether the whole file hashes as `manifest` says.
    pub fn finish(self, manifest: &Manifest) -> Result<(), ExportProblem> {
        self.lines.finish(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::ChainHead;
    use crate::event::{Access, Outcome};
    use carapace_tenancy::{SubjectId, TenantContext};

    fn export(n: usize) -> (Manifest, Vec<u8>, SigningKey) {
        let key = SigningKey::from_bytes(&[3; 32]);
        let org = OrgId::generate();
        let access = Access::system(TenantContext::new(
            org,
            SubjectId::parse("system:test").unwrap_or_else(|e| panic!("{e}")),
        ));
        let mut head = ChainHead::genesis(org);
        let prev = head.link;
        let mut file = Vec::new();
        for i in 0..n {
            let bytes = access
                .event(
                    "patient.read",
                    "patient",
                    Some(i.to_string()),
                    Outcome::Allowed,
                )
                .canonical();
            let (position, leaf, link) = head.append(&bytes);
            let l = line(position, &leaf, &link, &bytes);
            file.extend(serde_json::to_vec(&l).unwrap_or_default());
            file.push(b'\n');
        }
        let body = ManifestBody {
            format: 1,
            org,
            from: "2026-01-01T00:00:00Z".into(),
            to: "2027-01-01T00:00:00Z".into(),
            first_position: 1,
            last_position: u64::try_from(n).unwrap_or(u64::MAX),
            count: u64::try_from(n).unwrap_or(u64::MAX),
            prev_link: hex(&prev),
            last_link: hex(&head.link),
            events_sha256: file_sha256(&file),
            checkpoints: Vec::new(),
            public_key: bytes_hex(key.verifying_key().as_bytes()),
        };
        (Manifest::sign(body, &key), file, key)
    }

    /// A reader that hands out `data`, then fails.
    struct Failing(std::io::Cursor<Vec<u8>>);

    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match self.0.read(buf)? {
                0 => Err(std::io::Error::other("disk gone")),
                n => Ok(n),
            }
        }
    }

    #[test]
    fn an_export_is_verified_from_a_reader_a_line_at_a_time() {
        let (manifest, file, key) = export(50);
        let public = key.verifying_key();
        // Through a small buffer: lines arrive in pieces.
        let reader = std::io::BufReader::with_capacity(7, file.as_slice());
        assert_eq!(verify_export(&manifest, reader, &public), Ok(50));
        // A file that cannot be read to its end is not "ok".
        let cut = std::io::BufReader::new(Failing(std::io::Cursor::new(
            file[..file.len() / 2].to_vec(),
        )));
        assert!(matches!(
            verify_export(&manifest, cut, &public),
            Err(ExportProblem::Unreadable(_))
        ));
        // A line longer than any event is refused, not held whole.
        let mut huge = file.clone();
        huge.extend(std::iter::repeat_n(b'x', 3 * 1024 * 1024));
        assert!(matches!(
            verify_export(&manifest, huge.as_slice(), &public),
            Err(ExportProblem::BadLine {
                line: 51,
                what: "longer than any event",
                ..
            })
        ));
    }

    #[test]
    fn an_export_verifies_offline_and_a_changed_line_is_named() {
        let (manifest, file, key) = export(5);
        let public = key.verifying_key();
        assert_eq!(verify_export(&manifest, file.as_slice(), &public), Ok(5));

        let text = String::from_utf8_lossy(&file).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        let modified = text.replacen(lines[2], &lines[2].replace("allowed", "denied"), 1);
        assert!(matches!(
            verify_export(&manifest, modified.as_bytes(), &public),
            Err(ExportProblem::BadLine {
                line: 3,
                position: 3,
                what: "event modified"
            })
        ));
        let dropped: String = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 1)
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        assert!(matches!(
            verify_export(&manifest, dropped.as_bytes(), &public),
            Err(ExportProblem::BadLine {
                line: 2,
                position: 2,
                ..
            })
        ));
        let mut forged = manifest.clone();
        forged.body.count = 4;
        assert_eq!(
            verify_export(&forged, file.as_slice(), &public),
            Err(ExportProblem::BadManifestSignature)
        );
        let stranger = SigningKey::from_bytes(&[4; 32]).verifying_key();
        assert_eq!(
            verify_export(&manifest, file.as_slice(), &stranger),
            Err(ExportProblem::BadManifestSignature)
        );
    }
}
