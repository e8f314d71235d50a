//! The per-organization hash chain over audit events, its Ed25519-signed
//! checkpoints, and the verifier that names the first bad position.
//!
//! `leaf = SHA-256("carapace-audit-leaf-v1" 0x00 canonical_event)`, where
//! the canonical event is the one encoding of every field of the event
//! (organization, id, time, actor and its kind, acting-for, action,
//! resource type and id, PHI fields, outcome, origin with the request id,
//! detail). The columns stored beside it for searching (actor, action,
//! resource, outcome, time) are projections of it: the verifier requires
//! each stored column to equal its field of the hashed encoding, so an edit
//! of any column is found at its position like an edit of the body.
//!
//! `link_n = SHA-256("carapace-audit-link-v1" 0x00 link_{n-1} leaf_n)`,
//! `link_0 = SHA-256("carapace-audit-genesis-v1" 0x00 org_id)`. The three
//! domains are distinct, so a leaf can never pass for a link or the start
//! of another organization's chain. A checkpoint signs
//! `(org, position, link, time)`; a tombstone is a checkpoint marking where
//! the chain resumes after retention removed a prefix.

use carapace_tenancy::OrgId;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::event::AuditEvent;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

const LEAF_DOMAIN: &[u8] = b"carapace-audit-leaf-v1\0";
const LINK_DOMAIN: &[u8] = b"carapace-audit-link-v1\0";
const GENESIS_DOMAIN: &[u8] = b"carapace-audit-genesis-v1\0";
const CHECKPOINT_DOMAIN: &[u8] = b"carapace-audit-checkpoint-v1\0";

/// The leaf hash of an event's canonical bytes.
pub fn leaf_hash(canonical: &[u8]) -> Hash {
    Sha256::new()
        .chain_update(LEAF_DOMAIN)
        .chain_update(canonical)
        .finalize()
        .into()
}

/// The link after `prev` for `leaf`.
pub fn link_hash(prev: &Hash, leaf: &Hash) -> Hash {
    Sha256::new()
        .chain_update(LINK_DOMAIN)
        .chain_update(prev)
        .chain_update(leaf)
        .finalize()
        .into()
}

/// The link before the organization's first event (position 0).
pub fn genesis(org: OrgId) -> Hash {
    Sha256::new()
        .chain_update(GENESIS_DOMAIN)
        .chain_update(org.as_uuid().as_bytes())
        .finalize()
        .into()
}

/// Lower-case hex of a hash.
pub fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// What kind of signed statement a checkpoint is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointKind {
    /// "The chain had reached `position` with `link`."
    Head,
    /// "Positions up to `position` were removed by retention; the chain
    /// resumes after `link`."
    Tombstone,
}

impl CheckpointKind {
    /// The stable name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Head => "head",
            Self::Tombstone => "tombstone",
        }
    }

    /// Parses [`Self::as_str`].
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Head, Self::Tombstone]
            .into_iter()
            .find(|k| k.as_str() == s)
    }
}

/// A signed statement about an organization's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The organization.
    pub org: OrgId,
    /// Head or tombstone.
    pub kind: CheckpointKind,
    /// The chain position (1-based; 0 is the genesis).
    pub position: u64,
    /// The link at that position.
    pub link: Hash,
    /// When it was signed (whole seconds).
    pub signed_at: OffsetDateTime,
    /// Ed25519 signature over [`Self::payload`].
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// Signs a checkpoint.
    pub fn sign(
        key: &SigningKey,
        org: OrgId,
        kind: CheckpointKind,
        position: u64,
        link: Hash,
        signed_at: OffsetDateTime,
    ) -> Self {
        let signed_at = signed_at.replace_nanosecond(0).unwrap_or(signed_at);
        let mut cp = Self {
            org,
            kind,
            position,
            link,
            signed_at,
            signature: [0; 64],
        };
        cp.signature = key.sign(&cp.payload()).to_bytes();
        cp
    }

    /// The signed bytes.
    pub fn payload(&self) -> Vec<u8> {
        let mut p = CHECKPOINT_DOMAIN.to_vec();
        p.extend_from_slice(
            format!(
                "{}|{}|{}|{}|{}",
                self.org,
                self.kind.as_str(),
                self.position,
                hex(&self.link),
                self.signed_at.unix_timestamp()
            )
            .as_bytes(),
        );
        p
    }

    /// Whether `key` signed exactly this checkpoint.
    pub fn is_signed_by(&self, key: &VerifyingKey) -> bool {
        key.verify(&self.payload(), &Signature::from_bytes(&self.signature))
            .is_ok()
    }
}

/// The searchable columns stored beside an event's canonical bytes, as
/// stored (what filters and listings read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredColumns {
    /// When (`recorded_at`).
    pub at: OffsetDateTime,
    /// The actor.
    pub actor: String,
    /// The action.
    pub action: String,
    /// The resource type.
    pub resource_type: String,
    /// The resource id.
    pub resource_id: Option<String>,
    /// The outcome's stored name.
    pub outcome: String,
}

impl StoredColumns {
    /// The columns an intact row stores for `event`.
    pub fn of(event: &AuditEvent) -> Self {
        Self {
            at: event.at,
            actor: event.actor.as_str().to_owned(),
            action: event.action.clone(),
            resource_type: event.resource_type.clone(),
            resource_id: event.resource_id.clone(),
            outcome: event.outcome.as_str().to_owned(),
        }
    }

    /// The first column that differs from the hashed `event`'s field.
    fn first_edit(&self, event: &AuditEvent) -> Option<&'static str> {
        let intact = Self::of(event);
        [
            ("recorded_at", self.at == intact.at),
            ("actor", self.actor == intact.actor),
            ("action", self.action == intact.action),
            ("resource_type", self.resource_type == intact.resource_type),
            ("resource_id", self.resource_id == intact.resource_id),
            ("outcome", self.outcome == intact.outcome),
        ]
        .into_iter()
        .find(|(_, same)| !same)
        .map(|(column, _)| column)
    }
}

/// One stored chain position and the event it covers.
#[derive(Clone, Debug)]
pub struct ChainEntry {
    /// The position.
    pub position: u64,
    /// The event it names.
    pub event_id: Uuid,
    /// The stored leaf hash.
    pub leaf: Hash,
    /// The stored link.
    pub link: Hash,
    /// The event's stored canonical bytes; `None` when the event is gone.
    pub event: Option<Vec<u8>>,
    /// The event row's searchable columns (with `event`).
    pub columns: Option<StoredColumns>,
}

/// What is wrong at a position.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The event's content no longer matches its leaf hash.
    #[error("event modified")]
    Modified,
    /// The chain names an event that is not stored.
    #[error("event deleted")]
    Deleted,
    /// The position is not the next one: an entry was removed or added.
    #[error("expected position {expected}, found {found}")]
    Sequence {
        /// The next position.
        expected: u64,
        /// The stored one.
        found: u64,
    },
    /// The link does not follow from the previous one: an entry was
    /// inserted, removed or reordered before this point.
    #[error("chain link broken (event inserted, removed or reordered)")]
    BrokenLink,
    /// The event belongs elsewhere (another organization or id).
    #[error("event does not belong at this position")]
    Misplaced,
    /// A searchable column was changed: it no longer equals its field of
    /// the hashed event (a filter would now hide or misattribute it).
    #[error("column {column} modified")]
    ColumnModified {
        /// The column.
        column: &'static str,
    },
    /// A checkpoint's signature is invalid.
    #[error("checkpoint signature invalid")]
    BadSignature,
    /// The chain's link differs from the signed checkpoint's.
    #[error("chain differs from the signed checkpoint")]
    CheckpointMismatch,
    /// The chain ends before a signed checkpoint: its tail was cut.
    #[error("chain truncated: it ends at {ends_at}, a checkpoint was signed at {signed}")]
    Truncated {
        /// The last position present.
        ends_at: u64,
        /// The checkpoint's position.
        signed: u64,
    },
}

/// The first thing wrong with a chain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("position {position}: {problem}")]
pub struct Finding {
    /// The first bad position.
    pub position: u64,
    /// What is wrong there.
    pub problem: Problem,
}

/// A verified chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Positions checked.
    pub entries: u64,
    /// The last position (0 if none).
    pub head: u64,
    /// Checkpoints matched against the chain.
    pub checkpoints: u64,
}

/// Checks an organization's chain entry by entry, in position order.
#[derive(Debug)]
pub struct ChainVerifier {
    org: OrgId,
    next: u64,
    prev: Hash,
    checkpoints: Vec<Checkpoint>,
    matched: u64,
    entries: u64,
}

impl ChainVerifier {
    /// A verifier of `org`'s chain, starting after `tombstone` (if
    /// retention removed a prefix) and holding it to `checkpoints`. Every
    /// checkpoint's signature is checked against `key` first.
    pub fn new(
        org: OrgId,
        tombstone: Option<&Checkpoint>,
        mut checkpoints: Vec<Checkpoint>,
        key: &VerifyingKey,
    ) -> Result<Self, Finding> {
        let (next, prev) = match tombstone {
            Some(t) => {
                if t.org != org || t.kind != CheckpointKind::Tombstone || !t.is_signed_by(key) {
                    return Err(Finding {
                        position: t.position,
                        problem: Problem::BadSignature,
                    });
                }
                (t.position + 1, t.link)
            }
            None => (1, genesis(org)),
        };
        checkpoints.sort_by_key(|c| c.position);
        if let Some(bad) = checkpoints
            .iter()
            .find(|c| c.org != org || !c.is_signed_by(key))
        {
            return Err(Finding {
                position: bad.position,
                problem: Problem::BadSignature,
            });
        }
        // Checkpoints inside the removed prefix say nothing any more.
        checkpoints.retain(|c| c.position >= next);
        Ok(Self {
            org,
            next,
            prev,
            checkpoints,
            matched: 0,
            entries: 0,
        })
    }

    /// Checks the next entry.
    pub fn push(&mut self, entry: &ChainEntry) -> Result<(), Finding> {
        let position = self.next;
        let fail = |problem| Err(Finding { position, problem });
        if entry.position != position {
            return fail(Problem::Sequence {
                expected: position,
                found: entry.position,
            });
        }
        let Some(bytes) = &entry.event else {
            return fail(Problem::Deleted);
        };
        if leaf_hash(bytes) != entry.leaf {
            return fail(Problem::Modified);
        }
        let event = match AuditEvent::from_canonical(bytes) {
            Some(e) if e.id == entry.event_id && e.org == self.org => e,
            _ => return fail(Problem::Misplaced),
        };
        match &entry.columns {
            Some(columns) => {
                if let Some(column) = columns.first_edit(&event) {
                    return fail(Problem::ColumnModified { column });
                }
            }
            None => return fail(Problem::Deleted),
        }
        if link_hash(&self.prev, &entry.leaf) != entry.link {
            return fail(Problem::BrokenLink);
        }
        while let Some(cp) = self.checkpoints.first() {
            if cp.position > position {
                break;
            }
            if cp.link != entry.link {
                return fail(Problem::CheckpointMismatch);
            }
            self.checkpoints.remove(0);
            self.matched += 1;
        }
        self.prev = entry.link;
        self.next += 1;
        self.entries += 1;
        Ok(())
    }

    /// Ends the walk: a checkpoint beyond the last entry means the tail was
    /// cut.
    pub fn finish(self) -> Result<Verified, Finding> {
        let head = self.next - 1;
        if let Some(cp) = self.checkpoints.first() {
            return Err(Finding {
                position: self.next,
                problem: Problem::Truncated {
                    ends_at: head,
                    signed: cp.position,
                },
            });
        }
        Ok(Verified {
            entries: self.entries,
            head,
            checkpoints: self.matched,
        })
    }
}

/// Appends events to a chain: what the chaining job computes for each new
/// event after the current head.
#[derive(Clone, Copy, Debug)]
pub struct ChainHead {
    /// The last position (0 for an empty chain).
    pub position: u64,
    /// Its link.
    pub link: Hash,
}

impl ChainHead {
    /// The head of an empty chain.
    pub fn genesis(org: OrgId) -> Self {
        Self {
            position: 0,
            link: genesis(org),
        }
    }

    /// Appends the event with `canonical` bytes; returns (position, leaf, link).
    pub fn append(&mut self, canonical: &[u8]) -> (u64, Hash, Hash) {
        let leaf = leaf_hash(canonical);
        self.link = link_hash(&self.link, &leaf);
        self.position += 1;
        (self.position, leaf, self.link)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Access, Outcome};
    use carapace_tenancy::{SubjectId, TenantContext};

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[5; 32])
    }

    fn chain(org: OrgId, n: usize) -> Vec<ChainEntry> {
        let access = Access::system(TenantContext::new(
            org,
            SubjectId::parse("system:test").unwrap_or_else(|e| panic!("{e}")),
        ));
        let mut head = ChainHead::genesis(org);
        (0..n)
            .map(|i| {
                let e = access.event(
                    "patient.read",
                    "patient",
                    Some(i.to_string()),
                    Outcome::Allowed,
                );
                let bytes = e.canonical();
                let (position, leaf, link) = head.append(&bytes);
                ChainEntry {
                    position,
                    event_id: e.id,
                    leaf,
                    link,
                    event: Some(bytes),
                    columns: Some(StoredColumns::of(&e)),
                }
            })
            .collect()
    }

    fn checkpoint(org: OrgId, entries: &[ChainEntry], at: usize) -> Checkpoint {
        Checkpoint::sign(
            &key(),
            org,
            CheckpointKind::Head,
            entries[at - 1].position,
            entries[at - 1].link,
            OffsetDateTime::now_utc(),
        )
    }

    fn verify(
        org: OrgId,
        entries: &[ChainEntry],
        checkpoints: Vec<Checkpoint>,
    ) -> Result<Verified, Finding> {
        let mut v = ChainVerifier::new(org, None, checkpoints, &key().verifying_key())?;
        for e in entries {
            v.push(e)?;
        }
        v.finish()
    }

    fn at(position: u64, problem: Problem) -> Result<Verified, Finding> {
        Err(Finding { position, problem })
    }

    #[test]
    fn an_edit_of_any_searchable_column_is_found_at_its_position() {
        let org = OrgId::generate();
        type Edit = fn(&mut StoredColumns);
        let edits: [(&str, Edit); 6] = [
            ("recorded_at", |c| c.at += time::Duration::microseconds(1)),
            ("actor", |c| c.actor = "system:purge".into()),
            ("action", |c| c.action = "patient.list".into()),
            ("resource_type", |c| c.resource_type = "user".into()),
            ("resource_id", |c| c.resource_id = None),
            ("outcome", |c| c.outcome = "denied".into()),
        ];
        for (column, edit) in edits {
            let mut entries = chain(org, 6);
            if let Some(c) = entries[3].columns.as_mut() {
                edit(c);
            }
            assert_eq!(
                verify(org, &entries, vec![]),
                at(4, Problem::ColumnModified { column }),
                "{column}"
            );
        }
        let mut gone = chain(org, 3);
        gone[1].columns = None;
        assert_eq!(verify(org, &gone, vec![]), at(2, Problem::Deleted));
    }

    #[test]
    fn leaf_link_and_genesis_hashes_are_domain_separated() {
        let org = OrgId::generate();
        let bytes = b"same bytes";
        assert_ne!(leaf_hash(bytes), Sha256::digest(bytes).as_slice());
        let zero = [0u8; 32];
        // A link over (prev, leaf) never equals the leaf of prev||leaf.
        let mut joined = zero.to_vec();
        joined.extend_from_slice(&leaf_hash(bytes));
        assert_ne!(link_hash(&zero, &leaf_hash(bytes)), leaf_hash(&joined));
        assert_ne!(genesis(org), leaf_hash(org.as_uuid().as_bytes()));
        assert_ne!(genesis(org), genesis(OrgId::generate()));
    }

    #[test]
    fn an_intact_chain_verifies_with_its_checkpoints() {
        let org = OrgId::generate();
        let entries = chain(org, 10);
        let cps = vec![checkpoint(org, &entries, 4), checkpoint(org, &entries, 10)];
        assert_eq!(
            verify(org, &entries, cps),
            Ok(Verified {
                entries: 10,
                head: 10,
                checkpoints: 2
            })
        );
        assert_eq!(
            verify(org, &[], Vec::new()).map(|v| v.head),
            Ok(0),
            "an empty chain is fine"
        );
    }

    #[test]
    fn each_kind_of_tampering_is_named_at_its_position() {
        let org = OrgId::generate();
        let entries = chain(org, 10);
        let cps = || vec![checkpoint(org, &entries, 10)];

        let mut modified = entries.clone();
        if let Some(bytes) = modified[4].event.as_mut() {
            let text = String::from_utf8_lossy(bytes).replace("allowed", "denied");
            *bytes = text.into_bytes();
        }
        assert_eq!(verify(org, &modified, cps()), at(5, Problem::Modified));

        let mut deleted_event = entries.clone();
        deleted_event[2].event = None;
        assert_eq!(verify(org, &deleted_event, cps()), at(3, Problem::Deleted));

        let mut deleted_entry = entries.clone();
        deleted_entry.remove(6);
        assert_eq!(
            verify(org, &deleted_entry, cps()),
            at(
                7,
                Problem::Sequence {
                    expected: 7,
                    found: 8
                }
            )
        );

        // Inserted: a well-formed entry spliced in at 4, later positions renumbered.
        let mut inserted = entries.clone();
        let extra = chain(org, 1).remove(0);
        let mut head = ChainHead {
            position: 3,
            link: entries[2].link,
        };
        let bytes = extra.event.clone().unwrap_or_default();
        let (position, leaf, link) = head.append(&bytes);
        inserted.insert(
            3,
            ChainEntry {
                position,
                event_id: extra.event_id,
                leaf,
                link,
                event: Some(bytes),
                columns: extra.columns.clone(),
            },
        );
        for (i, e) in inserted.iter_mut().enumerate().skip(4) {
            e.position = u64::try_from(i + 1).unwrap_or(u64::MAX);
        }
        assert_eq!(verify(org, &inserted, cps()), at(5, Problem::BrokenLink));

        let mut reordered = entries.clone();
        reordered.swap(1, 2);
        reordered[1].position = 2;
        reordered[2].position = 3;
        assert_eq!(verify(org, &reordered, cps()), at(2, Problem::BrokenLink));

        let truncated = &entries[..7];
        assert_eq!(
            verify(org, truncated, cps()),
            at(
                8,
                Problem::Truncated {
                    ends_at: 7,
                    signed: 10
                }
            )
        );

        // Rewritten history (every link recomputed) still contradicts the checkpoint.
        let mut rewritten = entries.clone();
        let mut head = ChainHead::genesis(org);
        for (i, e) in rewritten.iter_mut().enumerate() {
            if i == 5 {
                let forged = chain(org, 1).remove(0);
                e.event_id = forged.event_id;
                e.event = forged.event;
                e.columns = forged.columns;
            }
            let (_, leaf, link) = head.append(e.event.as_deref().unwrap_or_default());
            e.leaf = leaf;
            e.link = link;
        }
        assert_eq!(
            verify(org, &rewritten, cps()),
            at(10, Problem::CheckpointMismatch)
        );

        let other_org = chain(OrgId::generate(), 3);
        assert_eq!(
            verify(org, &other_org, Vec::new()),
            at(1, Problem::Misplaced)
        );
    }

    #[test]
    fn forged_checkpoints_and_tombstones_are_refused() {
        let org = OrgId::generate();
        let entries = chain(org, 5);
        let mut forged = checkpoint(org, &entries, 5);
        forged.position = 4;
        assert_eq!(
            verify(org, &entries, vec![forged]),
            at(4, Problem::BadSignature)
        );
        let stranger = SigningKey::from_bytes(&[6; 32]);
        let other = Checkpoint::sign(
            &stranger,
            org,
            CheckpointKind::Head,
            5,
            entries[4].link,
            OffsetDateTime::now_utc(),
        );
        assert_eq!(
            verify(org, &entries, vec![other]),
            at(5, Problem::BadSignature)
        );

        // After retention removed 1..=3, the rest verifies from the tombstone.
        let tombstone = Checkpoint::sign(
            &key(),
            org,
            CheckpointKind::Tombstone,
            3,
            entries[2].link,
            OffsetDateTime::now_utc(),
        );
        let mut v = ChainVerifier::new(
            org,
            Some(&tombstone),
            vec![checkpoint(org, &entries, 2), checkpoint(org, &entries, 5)],
            &key().verifying_key(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        for e in &entries[3..] {
            assert_eq!(v.push(e), Ok(()));
        }
        assert_eq!(v.finish().map(|v| (v.entries, v.head)), Ok((2, 5)));
    }
}
