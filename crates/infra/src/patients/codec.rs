//! The stored form of a patient: every PHI column sealed for its row, the blind indexes that let exact-match search work, and back.

use super::*;

/// What the plaintext `reason` column holds now that reasons are encrypted.
pub(super) const SEALED_REASON: &str = "[encrypted: see reason_sealed]";

/// The cross-organization presence marker of a patient id.
pub(super) fn id_hash(id: PatientId) -> Vec<u8> {
    use sha2::Digest as _;
    sha2::Sha256::digest(id.as_uuid().as_bytes()).to_vec()
}

pub(super) fn integrity() -> ClinicalError {
    ClinicalError::Storage(fields::integrity())
}

fn date_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Blind index of a member id (exact match after normalising).
pub(super) fn member_index(key: &DataKey, member_id: &str) -> Vec<u8> {
    crate::sealed::blind_index(key, TABLE, &MEMBER_ID_INDEX, &[member_id])
}

/// Blind index of (family name, birth date).
pub(super) fn name_dob_index(key: &DataKey, family_name: &str, birth_date: Date) -> Vec<u8> {
    crate::sealed::blind_index(
        key,
        TABLE,
        &NAME_DOB_INDEX,
        &[family_name, &date_text(birth_date)],
    )
}

/// Blind index of a phone number (its last ten digits).
pub(crate) fn phone_index(key: &DataKey, phone: &str) -> Vec<u8> {
    crate::sealed::blind_index(key, TABLE, &PHONE_INDEX, &[phone])
}

/// Field storage lives here and in [`from_row`] only: every PHI column is
/// encrypted, bound to its org, table, column and row.
pub(super) fn to_row(
    key: &DataKey,
    org: OrgId,
    id: PatientId,
    d: &Demographics,
    created: OffsetDateTime,
    updated: OffsetDateTime,
) -> Result<row::ActiveModel, ClinicalError> {
    let sealer = Sealer::new(key, org, TABLE, id.as_uuid());
    let seal = |column: &str, plain: &str| sealer.seal(column, plain);
    let opt = |column: &str, v: &Option<Phi<String>>| {
        v.as_ref().map(|v| seal(column, v.expose_phi())).transpose()
    };
    let birth_date = *d.birth_date.expose_phi();
    Ok(row::ActiveModel {
        org_id: Set(org.as_uuid()),
        id: Set(id.as_uuid()),
        key_version: Set(i32::try_from(key.version()).unwrap_or(i32::MAX)),
        given_name: Set(seal(GIVEN_NAME, d.given_name.expose_phi())?),
        family_name: Set(seal(FAMILY_NAME, d.family_name.expose_phi())?),
        birth_date: Set(seal(BIRTH_DATE, &date_text(birth_date))?),
        member_id: Set(opt(MEMBER_ID, &d.member_id)?),
        phone: Set(opt(PHONE, &d.phone)?),
        email: Set(opt(EMAIL, &d.email)?),
        sex: Set(d
            .sex
            .as_ref()
            .map(|v| seal(SEX, v.expose_phi().as_str()))
            .transpose()?),
        member_id_idx: Set(d
            .member_id
            .as_ref()
            .map(|m| member_index(key, m.expose_phi()))),
        name_dob_idx: Set(name_dob_index(key, d.family_name.expose_phi(), birth_date)),
        phone_idx: Set(d.phone.as_ref().map(|p| phone_index(key, p.expose_phi()))),
        created_at: Set(created),
        updated_at: Set(updated),
        // Linking is its own operation; updates leave it alone.
        account_subject: NotSet,
    })
}

pub(super) fn from_row(key: &DataKey, r: row::Model) -> Result<Patient, ClinicalError> {
    let (org, id) = (r.org_id, r.id);
    let sealer = Sealer::new(key, org, TABLE, id);
    let text = |column: &str, v: &[u8]| sealer.open(column, v).map(Phi::new);
    let opt = |column: &str, v: &Option<Vec<u8>>| v.as_deref().map(|v| text(column, v)).transpose();
    let birth_date = sealer.open(BIRTH_DATE, &r.birth_date)?;
    let birth_date = Date::parse(&birth_date, format_description!("[year]-[month]-[day]"))
        .map_err(|_| integrity())?;
    Ok(Patient {
        id: PatientId::from_uuid(id),
        org: OrgId::from_uuid(org),
        demographics: Demographics {
            given_name: text(GIVEN_NAME, &r.given_name)?,
            family_name: text(FAMILY_NAME, &r.family_name)?,
            birth_date: Phi::new(birth_date),
            member_id: opt(MEMBER_ID, &r.member_id)?,
            phone: opt(PHONE, &r.phone)?,
            email: opt(EMAIL, &r.email)?,
            sex: r
                .sex
                .as_deref()
                .map(|v| {
                    sealer
                        .open(SEX, v)
                        .map_err(ClinicalError::from)
                        .and_then(|t| Sex::parse(&t).ok_or_else(integrity))
                        .map(Phi::new)
                })
                .transpose()?,
        },
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// Now, at the microsecond precision both databases store.
pub(super) fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000)
        .unwrap_or(t)
}
