//! The registry of sealed columns: every column that holds a ciphertext
//! under an organization's data key, table by table, with what a ciphertext
//! is bound to (its table, column and row names), where its key version is
//! kept, and the blind indexes derived from its plaintext.
//!
//! The repositories take their table and binding names from here, and key
//! rotation ([`rotation`]) walks [`REGISTRY`], so the two cannot drift. A
//! schema test fails when a column that can hold a ciphertext is neither
//! registered here nor named in its allow-list (with the reason), so a new
//! sealed column cannot be left out of rotation unnoticed.

pub mod rotation;

use carapace_phi_crypto::envelope::{DataKey, normalise};

/// One column of a row's primary key (besides the organization).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyPart {
    /// A `uuid` column.
    Uuid(&'static str),
    /// A `bytea`/blob column.
    Bytes(&'static str),
    /// An `integer` column.
    Int(&'static str),
}

impl KeyPart {
    /// The column's name.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Uuid(c) | Self::Bytes(c) | Self::Int(c) => c,
        }
    }
}

/// The row identity a ciphertext is bound to (16 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowBinding {
    /// The bytes of a `uuid` key column.
    Uuid(&'static str),
    /// The first 16 bytes of a `bytea` key column (a hash).
    BytesPrefix(&'static str),
}

/// Where a row's data-key version is kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionAt {
    /// An `integer` column naming the version every sealed column of the
    /// row is under.
    Column(&'static str),
    /// Only in the ciphertext's own header (`0x01 | version (u32 BE) | …`,
    /// [`carapace_phi_crypto::envelope::key_version`]); such a table has one
    /// sealed column, and a row whose column is NULL uses no key.
    Header,
}

/// The column name a ciphertext is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BindingName {
    /// A fixed name.
    Fixed(&'static str),
    /// `prefix` followed by the row's integer key column `by` (a chunk
    /// bound to its position).
    Numbered {
        /// The name's fixed part.
        prefix: &'static str,
        /// The integer key column that completes it.
        by: &'static str,
    },
}

/// One sealed column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedColumn {
    /// The column in the table.
    pub column: &'static str,
    /// The name its ciphertexts are bound to.
    pub binding: BindingName,
}

/// A blind index: HMAC under the data key's index root of the normalised
/// plaintexts of `from` (sealed columns of the same row) joined by `|`;
/// NULL when one of them is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlindIndex {
    /// The column that holds it.
    pub column: &'static str,
    /// The name its key is derived for (with the table's name).
    pub name: &'static str,
    /// The sealed columns it is computed from, in order.
    pub from: &'static [&'static str],
    /// How each value is normalised first.
    pub normalise: Normalise,
}

/// How a blind index's values are normalised before they are hashed, so
/// that the notations people type find each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalise {
    /// White space folded, lower case.
    Text,
    /// The last ten digits (`+1 (617) 555-0100`, `617.555.0100` and
    /// `+16175550100` are one number).
    Phone,
}

/// `value` as `how` normalises it.
pub fn normalised(how: Normalise, value: &str) -> String {
    match how {
        Normalise::Text => normalise(value),
        Normalise::Phone => {
            let digits: Vec<char> = value.chars().filter(char::is_ascii_digit).collect();
            digits[digits.len().saturating_sub(10)..].iter().collect()
        }
    }
}

/// A table with sealed columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealedTable {
    /// The table, which is also the table name ciphertexts are bound to.
    pub table: &'static str,
    /// The organization column.
    pub org: &'static str,
    /// The rest of the primary key.
    pub key: &'static [KeyPart],
    /// The row identity ciphertexts are bound to.
    pub row: RowBinding,
    /// Where the key version is kept.
    pub version: VersionAt,
    /// The sealed columns.
    pub columns: &'static [SealedColumn],
    /// Blind indexes computed from sealed columns.
    pub blind_indexes: &'static [BlindIndex],
}

impl SealedTable {
    /// `table`'s `columns`, in rows keyed by (`org_id`, `id`): each
    /// ciphertext bound to its row's `id`, the key version in
    /// `key_version`, no blind index. Most tables are this.
    pub const fn by_id(table: &'static str, columns: &'static [SealedColumn]) -> Self {
        Self {
            table,
            org: "org_id",
            key: &[KeyPart::Uuid("id")],
            row: RowBinding::Uuid("id"),
            version: VersionAt::Column("key_version"),
            columns,
            blind_indexes: &[],
        }
    }

    /// `table`'s `columns`, in one row per organization: each ciphertext
    /// bound to the organization, the key version in `key_version`.
    pub const fn per_org(table: &'static str, columns: &'static [SealedColumn]) -> Self {
        Self {
            table,
            org: "org_id",
            key: &[KeyPart::Uuid("org_id")],
            row: RowBinding::Uuid("org_id"),
            version: VersionAt::Column("key_version"),
            columns,
            blind_indexes: &[],
        }
    }
}

const fn fixed(column: &'static str) -> SealedColumn {
    SealedColumn {
        column,
        binding: BindingName::Fixed(column),
    }
}

/// `patients`: demographics; blind indexes for exact-match search and
/// for matching a caller's number.
pub mod patients {
    use super::*;

    /// The table.
    pub const TABLE: &str = "patients";
    /// Given name.
    pub const GIVEN_NAME: &str = "given_name";
    /// Family name.
    pub const FAMILY_NAME: &str = "family_name";
    /// Birth date (`YYYY-MM-DD`).
    pub const BIRTH_DATE: &str = "birth_date";
    /// Member id.
    pub const MEMBER_ID: &str = "member_id";
    /// Phone.
    pub const PHONE: &str = "phone";
    /// E-mail.
    pub const EMAIL: &str = "email";
    /// Sex.
    pub const SEX: &str = "sex";
    /// The member-id search index.
    pub const MEMBER_ID_INDEX: BlindIndex = BlindIndex {
        column: "member_id_idx",
        name: "member_id",
        from: &[MEMBER_ID],
        normalise: Normalise::Text,
    };
    /// The (family name, birth date) search index.
    pub const NAME_DOB_INDEX: BlindIndex = BlindIndex {
        column: "name_dob_idx",
        name: "family_name,birth_date",
        from: &[FAMILY_NAME, BIRTH_DATE],
        normalise: Normalise::Text,
    };
    /// The phone index (who left a voicemail).
    pub const PHONE_INDEX: BlindIndex = BlindIndex {
        column: "phone_idx",
        name: "phone",
        from: &[PHONE],
        normalise: Normalise::Phone,
    };
    /// The registry entry.
    pub const SEALED: SealedTable = SealedTable {
        blind_indexes: &[MEMBER_ID_INDEX, NAME_DOB_INDEX, PHONE_INDEX],
        ..SealedTable::by_id(
            TABLE,
            &[
                fixed(GIVEN_NAME),
                fixed(FAMILY_NAME),
                fixed(BIRTH_DATE),
                fixed(MEMBER_ID),
                fixed(PHONE),
                fixed(EMAIL),
                fixed(SEX),
            ],
        )
    };
}

/// `break_glass_grants`: the declared reason (version in its header).
pub mod break_glass_grants {
    use super::*;

    /// The table.
    pub const TABLE: &str = "break_glass_grants";
    /// The name the reason is bound to (kept in `reason_sealed`; the old
    /// `reason` column holds a fixed marker).
    pub const REASON: &str = "reason";
    /// The registry entry.
    pub const SEALED: SealedTable = SealedTable {
        table: TABLE,
        org: "org_id",
        key: &[KeyPart::Uuid("id")],
        row: RowBinding::Uuid("id"),
        version: VersionAt::Header,
        columns: &[SealedColumn {
            column: "reason_sealed",
            binding: BindingName::Fixed(REASON),
        }],
        blind_indexes: &[],
    };
}

/// `appointments`: the visit reason.
pub mod appointments {
    use super::*;

    /// The table.
    pub const TABLE: &str = "appointments";
    /// The visit reason.
    pub const REASON: &str = "reason";
    /// The registry entry.
    pub const SEALED: SealedTable = SealedTable::by_id(TABLE, &[fixed(REASON)]);
}

/// `medication_statements`: every clinical column.
pub mod medication_statements {
    use super::*;

    /// The table.
    pub const TABLE: &str = "medication_statements";
    /// Drug name.
    pub const DRUG_NAME: &str = "drug_name";
    /// Dose.
    pub const DOSE: &str = "dose";
    /// Schedule.
    pub const SCHEDULE: &str = "schedule";
    /// Start date.
    pub const STARTED_ON: &str = "started_on";
    /// Stop date.
    pub const STOPPED_ON: &str = "stopped_on";
    /// The registry entry.
    pub const SEALED: SealedTable = SealedTable::by_id(
        TABLE,
        &[
            fixed(DRUG_NAME),
            fixed(DOSE),
            fixed(SCHEDULE),
            fixed(STARTED_ON),
            fixed(STOPPED_ON),
        ],
    );
}

/// `side_effects`: every clinical column.
pub mod side_effects {
    use super::*;

    /// The table.
    pub const TABLE: &str = "side_effects";
    /// Symptom.
    pub const SYMPTOM: &str = "symptom";
    /// Severity.
    pub const SEVERITY: &str = "severity";
    /// Onset date.
    pub const ONSET_ON: &str = "onset_on";
    /// The registry entry.
    pub const SEALED: SealedTable =
        SealedTable::by_id(TABLE, &[fixed(SYMPTOM), fixed(SEVERITY), fixed(ONSET_ON)]);
}

/// `verification_tasks`: payer, plan, codes, reference and reason.
pub mod verification_tasks {
    use super::*;

    /// The table.
    pub const TABLE: &str = "verification_tasks";
    /// Payer name.
    pub const PAYER_NAME: &str = "payer_name";
    /// Payer phone.
    pub const PAYER_PHONE: &str = "payer_phone";
    /// Plan.
    pub const PLAN: &str = "plan";
    /// Procedure codes (comma-separated).
    pub const PROCEDURE_CODES: &str = "procedure_codes";
    /// The payer's reference number.
    pub const REFERENCE_NUMBER: &str = "reference_number";
    /// Why the call failed.
    pub const FAILURE_REASON: &str = "failure_reason";
    /// The registry entry.
    pub const SEALED: SealedTable = SealedTable::by_id(
        TABLE,
        &[
            fixed(PAYER_NAME),
            fixed(PAYER_PHONE),
            fixed(PLAN),
            fixed(PROCEDURE_CODES),
            fixed(REFERENCE_NUMBER),
            fixed(FAILURE_REASON),
        ],
    );
}

/// `verification_settings`: the organization's supervisor number, one row
/// per organization, bound to the organization itself.
pub mod verification_settings {
    use super::*;

    /// The table.
    pub const TABLE: &str = "verification_settings";
    /// The supervisor's number.
    pub const SUPERVISOR_PHONE: &str = "supervisor_phone";
    /// The registry entry.
    pub const SEALED: SealedTable = SealedTable::per_org(TABLE, &[fixed(SUPERVISOR_PHONE)]);
}

/// `telephony_accounts`: the organization's provider auth token, bound
/// to the organization itself.
pub mod telephony_accounts {
    use super::*;

    /// The table.
    pub const TABLE: &str = "telephony_accounts";
    /// The auth token.
    pub const AUTH_TOKEN: &str = "auth_token";
    /// The registry entry.
    pub const SEALED: SealedTable = SealedTable::per_org(TABLE, &[fixed(AUTH_TOKEN)]);
}

/// `telephony_recordings`: a call recording's audio, bound to its row.
pub mod telephony_recordings {
    use super::*;

    /// The table.
    pub const TABLE: &str = "telephony_recordings";
    /// The audio.
    pub const AUDIO: &str = "audio";
    /// Its transcript.
    pub const TRANSCRIPT: &str = "transcript";
    /// The registry entry.
    pub const SEALED: SealedTable = SealedTable::by_id(TABLE, &[fixed(AUDIO), fixed(TRANSCRIPT)]);
}

/// `bulk_export_files`: an export's NDJSON, bound to its file row.
pub mod bulk_export_files {
    use super::*;

    /// The table.
    pub const TABLE: &str = "bulk_export_files";
    /// The NDJSON.
    pub const BODY: &str = "body";
    /// The registry entry.
    pub const SEALED: SealedTable = SealedTable::by_id(TABLE, &[fixed(BODY)]);
}

/// `telephony_voicemails`: the caller's number, the message and its
/// transcript, bound to the voicemail's row.
pub mod telephony_voicemails {
    use super::*;

    /// The table.
    pub const TABLE: &str = "telephony_voicemails";
    /// The caller's number.
    pub const CALLER: &str = "caller";
    /// The message.
    pub const AUDIO: &str = "audio";
    /// Its transcript.
    pub const TRANSCRIPT: &str = "transcript";
    /// The registry entry.
    pub const SEALED: SealedTable =
        SealedTable::by_id(TABLE, &[fixed(CALLER), fixed(AUDIO), fixed(TRANSCRIPT)]);
}

/// `verification_transcripts`: each chunk, bound to its task and position.
pub mod verification_transcripts {
    use super::*;

    /// The table.
    pub const TABLE: &str = "verification_transcripts";
    /// What a chunk's binding name starts with (its number follows).
    pub const CHUNK_PREFIX: &str = "chunk.";
    /// The registry entry.
    pub const SEALED: SealedTable = SealedTable {
        table: TABLE,
        org: "org_id",
        key: &[KeyPart::Uuid("task_id"), KeyPart::Int("seq")],
        row: RowBinding::Uuid("task_id"),
        version: VersionAt::Column("key_version"),
        columns: &[SealedColumn {
            column: "chunk",
            binding: BindingName::Numbered {
                prefix: CHUNK_PREFIX,
                by: "seq",
            },
        }],
        blind_indexes: &[],
    };

    /// The name chunk `seq` is bound to: its position, so a chunk moved
    /// to another position fails to open.
    pub fn chunk_binding(seq: u32) -> String {
        format!("{CHUNK_PREFIX}{seq}")
    }
}

/// `assistant_turns`: each message.
pub mod assistant_turns {
    use super::*;

    /// The table.
    pub const TABLE: &str = "assistant_turns";
    /// The message.
    pub const CONTENT: &str = "content";
    /// The registry entry.
    pub const SEALED: SealedTable = SealedTable::by_id(TABLE, &[fixed(CONTENT)]);
}

/// `idempotency_keys`: the stored response (version in its header), bound
/// to the first 16 bytes of the key's hash.
pub mod idempotency_keys {
    use super::*;

    /// The table.
    pub const TABLE: &str = "idempotency_keys";
    /// The stored response.
    pub const RESPONSE: &str = "response";
    /// The registry entry.
    pub const SEALED: SealedTable = SealedTable {
        table: TABLE,
        org: "org_id",
        key: &[KeyPart::Bytes("key_hash")],
        row: RowBinding::BytesPrefix("key_hash"),
        version: VersionAt::Header,
        columns: &[fixed(RESPONSE)],
        blind_indexes: &[],
    };
}

/// Every table with columns sealed under an organization's data key, in the
/// order rotation walks them.
pub const REGISTRY: &[SealedTable] = &[
    patients::SEALED,
    break_glass_grants::SEALED,
    appointments::SEALED,
    medication_statements::SEALED,
    side_effects::SEALED,
    verification_tasks::SEALED,
    verification_transcripts::SEALED,
    verification_settings::SEALED,
    telephony_accounts::SEALED,
    telephony_recordings::SEALED,
    telephony_voicemails::SEALED,
    bulk_export_files::SEALED,
    assistant_turns::SEALED,
    idempotency_keys::SEALED,
];

/// The registered table `name`.
pub fn table(name: &str) -> Option<&'static SealedTable> {
    REGISTRY.iter().find(|t| t.table == name)
}

/// The blind index `index` of `table` over `values` (the plaintexts of
/// `index.from`, in order): each normalised, joined by `|`.
pub(crate) fn blind_index(
    key: &DataKey,
    table: &str,
    index: &BlindIndex,
    values: &[&str],
) -> Vec<u8> {
    let value = values
        .iter()
        .map(|v| normalised(index.normalise, v))
        .collect::<Vec<_>>()
        .join("|");
    key.blind_index(table, index.name, value.as_bytes())
        .to_vec()
}

#[cfg(test)]
mod tests;
