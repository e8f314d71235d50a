//! Voicemails over SeaORM: the caller's number, the message and its
//! transcript sealed for the row; the patient found by the phone blind
//! index (exactly one match, or the organization's inbox).

use std::sync::Arc;

use carapace_audit::{Access, AuditEvent, Outcome};
use carapace_clinical::ClinicalError;
use carapace_clinical::patient::PatientId;
use carapace_clinical::telephony::voicemail::{
    Message, Voicemail, VoicemailId, VoicemailRepository,
};
use carapace_clinical::telephony::{Delivery, ProviderSid};
use carapace_phi_crypto::Phi;
use carapace_tenancy::TenantContext;
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ActiveModelTrait as _, ColumnTrait as _, DatabaseTransaction, EntityTrait as _,
    QueryFilter as _, QueryOrder as _, QuerySelect as _,
};
use uuid::Uuid;

use crate::db::{Database, storage_error};
use crate::db::{Fetch as _, Run as _};
use crate::entity::{patient, telephony_voicemail as row};
use crate::fields::{self, KeyVersions};
use crate::keys::KeyRing;
use crate::repo::{self, Sealer, audited};
use crate::scope::Live as _;
use crate::sealed::telephony_voicemails::{AUDIO, CALLER, TABLE, TRANSCRIPT};

/// Most voicemails one listing returns.
const LIST_MAX: u64 = 200;

/// [`VoicemailRepository`] over `telephony_voicemails`.
#[derive(Clone, Debug)]
pub struct SeaVoicemails {
    db: Database,
    keys: Arc<KeyRing>,
}

impl SeaVoicemails {
    /// Voicemails in `db`, sealed with the organizations' keys.
    pub fn new(db: Database, keys: Arc<KeyRing>) -> Self {
        Self { db, keys }
    }

    async fn decrypt(
        &self,
        ctx: &TenantContext,
        r: &row::Model,
    ) -> Result<Voicemail, ClinicalError> {
        let key = KeyVersions::new(&self.keys, ctx).get(r.key_version).await?;
        let sealer = Sealer::new(&key, r.org_id, TABLE, r.id);
        Ok(Voicemail {
            id: VoicemailId::from_uuid(r.id),
            caller: Phi::new(sealer.open(CALLER, &r.caller)?),
            patient: r.patient_id.map(PatientId::from_uuid),
            received_at: r.received_at,
            duration_secs: r
                .duration_seconds
                .map(|d| u32::try_from(d).map_err(|_| integrity()))
                .transpose()?,
            transcript: r
                .transcript
                .as_deref()
                .map(|t| sealer.open(TRANSCRIPT, t).map(Phi::new))
                .transpose()?,
            deleted_at_provider: r.deleted_at_provider,
        })
    }

    async fn by_call(
        tx: &DatabaseTransaction,
        ctx: &TenantContext,
        call: &ProviderSid,
    ) -> Result<Option<row::Model>, ClinicalError> {
        Ok(row::Entity::find()
            .live(ctx)
            .filter(row::Column::CallSid.eq(call.as_str()))
            .one_in(tx)
            .await?)
    }
}

fn integrity() -> ClinicalError {
    ClinicalError::Storage(fields::integrity())
}

fn event(access: &Access, action: &str, id: Option<Uuid>, outcome: Outcome) -> AuditEvent {
    repo::event(access, action, "voicemail", id, outcome)
}

impl VoicemailRepository for SeaVoicemails {
    async fn open(
        &self,
        access: &Access,
        call: &ProviderSid,
        caller: &Phi<String>,
    ) -> Result<Delivery, ClinicalError> {
        let ctx = access.tenant();
        let (org, id) = (ctx.org().as_uuid(), Uuid::now_v7());
        let key = self.keys.current(ctx).await?;
        let sealed = Sealer::new(&key, org, TABLE, id).seal(CALLER, caller.expose_phi())?;
        // Each key version indexes phones with its own key: look the caller
        // up under every version the organization's patients may be under.
        let indexes: Vec<Vec<u8>> = self
            .keys
            .live(ctx)
            .await?
            .iter()
            .map(|k| crate::patients::phone_index(k, caller.expose_phi()))
            .collect();
        audited(&self.db, ctx, async |tx: &DatabaseTransaction| {
            if Self::by_call(tx, ctx, call).await?.is_some() {
                return Ok((Delivery::Replay, Vec::new()));
            }
            let matches = patient::Entity::find()
                .live(ctx)
                .filter(patient::Column::PhoneIdx.is_in(indexes.clone()))
                .select_only()
                .column(patient::Column::Id)
                .limit(2)
                .into_tuple::<Uuid>()
                .all(tx)
                .await
                .map_err(storage_error)?;
            let patient = match matches.as_slice() {
                [one] => Some(*one),
                _ => None,
            };
            row::Entity::insert(row::ActiveModel {
                org_id: Set(org),
                id: Set(id),
                call_sid: Set(call.as_str().to_owned()),
                key_version: Set(i32::try_from(key.version()).map_err(|_| integrity())?),
                caller: Set(sealed.clone()),
                patient_id: Set(patient),
                recording_sid: Set(None),
                audio: Set(None),
                transcript: Set(None),
                duration_seconds: Set(None),
                deleted_at_provider: Set(None),
                received_at: Set(carapace_audit::event::now_micros()),
                recorded_at: Set(None),
            })
            .run(tx)
            .await?;
            let detail = match patient {
                Some(p) => format!("call {call}, matched to patient {p}"),
                None => format!("call {call}, to the organization's inbox"),
            };
            let received = event(access, "voicemail.received", Some(id), Outcome::Allowed)
                .with_phi_fields(&["caller"])
                .with_detail(detail);
            Ok((Delivery::Processed, vec![received]))
        })
        .await
    }

    async fn recorded(
        &self,
        ctx: &TenantContext,
        call: &ProviderSid,
    ) -> Result<Option<bool>, ClinicalError> {
        let select = row::Entity::find()
            .live(ctx)
            .filter(row::Column::CallSid.eq(call.as_str()));
        Ok(repo::read_one(&self.db, ctx, select)
            .await?
            .map(|r| r.recording_sid.is_some()))
    }

    async fn attach(
        &self,
        access: &Access,
        call: &ProviderSid,
        message: &Message,
    ) -> Result<Delivery, ClinicalError> {
        let ctx = access.tenant();
        audited(&self.db, ctx, async |tx: &DatabaseTransaction| {
            let Some(found) = Self::by_call(tx, ctx, call).await? else {
                return Ok((Delivery::UnknownCall, Vec::new()));
            };
            if found.recording_sid.is_some() {
                return Ok((Delivery::Replay, Vec::new()));
            }
            let (org, id) = (found.org_id, found.id);
            let version = u32::try_from(found.key_version).map_err(|_| integrity())?;
            let key = self.keys.version(ctx, version).await?;
            let sealer = Sealer::new(&key, org, TABLE, id);
            let mut update: row::ActiveModel = found.into();
            update.recording_sid = Set(Some(message.recording.as_str().to_owned()));
            update.audio = Set(Some(sealer.seal_bytes(AUDIO, message.audio.expose_phi())?));
            update.transcript = Set(message
                .transcript
                .as_ref()
                .map(|t| sealer.seal(TRANSCRIPT, t.expose_phi()))
                .transpose()?);
            update.duration_seconds = Set(Some(
                i32::try_from(message.duration_secs).map_err(|_| integrity())?,
            ));
            update.recorded_at = Set(Some(carapace_audit::event::now_micros()));
            update.update(tx).await.map_err(storage_error)?;
            let mut fields = vec!["audio"];
            if message.transcript.is_some() {
                fields.push("transcript");
            }
            let recorded = event(access, "voicemail.recorded", Some(id), Outcome::Allowed)
                .with_phi_fields(&fields)
                .with_detail(format!(
                    "call {call} recording {}, {} s",
                    message.recording, message.duration_secs
                ));
            Ok((Delivery::Processed, vec![recorded]))
        })
        .await
    }

    async fn recording_deleted(
        &self,
        access: &Access,
        recording: &ProviderSid,
    ) -> Result<(), ClinicalError> {
        let ctx = access.tenant();
        audited(&self.db, ctx, async |tx: &DatabaseTransaction| {
            let Some(found) = row::Entity::find()
                .live(ctx)
                .filter(row::Column::RecordingSid.eq(recording.as_str()))
                .one_in(tx)
                .await?
            else {
                return Err(ClinicalError::NotFound);
            };
            let id = found.id;
            let mut update: row::ActiveModel = found.into();
            update.deleted_at_provider = Set(Some(carapace_audit::event::now_micros()));
            update.update(tx).await.map_err(storage_error)?;
            let deleted = event(
                access,
                "voicemail.recording_deleted",
                Some(id),
                Outcome::Allowed,
            )
            .with_detail(format!("recording {recording} deleted at the provider"));
            Ok(((), vec![deleted]))
        })
        .await
    }

    async fn list(&self, access: &Access) -> Result<Vec<Voicemail>, ClinicalError> {
        let ctx = access.tenant();
        let rows =
            audited::<_, ClinicalError, _>(&self.db, ctx, async |tx: &DatabaseTransaction| {
                let rows = row::Entity::find()
                    .live(ctx)
                    .order_by_desc(row::Column::ReceivedAt)
                    .limit(LIST_MAX)
                    .all_in(tx)
                    .await?;
                let listed = event(access, "voicemail.list", None, Outcome::Allowed)
                    .with_phi_fields(&["caller", "transcript"])
                    .with_detail(format!("{} voicemails", rows.len()));
                Ok((rows, vec![listed]))
            })
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            out.push(self.decrypt(ctx, r).await?);
        }
        Ok(out)
    }

    async fn get(
        &self,
        access: &Access,
        id: VoicemailId,
    ) -> Result<Option<Voicemail>, ClinicalError> {
        let ctx = access.tenant();
        let found =
            audited::<_, ClinicalError, _>(&self.db, ctx, async |tx: &DatabaseTransaction| {
                let found = row::Entity::find()
                    .live(ctx)
                    .filter(row::Column::Id.eq(id.as_uuid()))
                    .one_in(tx)
                    .await?;
                let outcome = Outcome::found(found.is_some());
                let read = event(access, "voicemail.read", Some(id.as_uuid()), outcome);
                Ok((found, vec![read]))
            })
            .await?;
        match found {
            Some(r) => Ok(Some(self.decrypt(ctx, &r).await?)),
            None => Ok(None),
        }
    }

    async fn audio(
        &self,
        access: &Access,
        id: VoicemailId,
    ) -> Result<Option<Phi<Vec<u8>>>, ClinicalError> {
        let ctx = access.tenant();
        let found =
            audited::<_, ClinicalError, _>(&self.db, ctx, async |tx: &DatabaseTransaction| {
                let found = row::Entity::find()
                    .live(ctx)
                    .filter(row::Column::Id.eq(id.as_uuid()))
                    .filter(row::Column::Audio.is_not_null())
                    .one_in(tx)
                    .await?;
                let played = match &found {
                    Some(_) => event(
                        access,
                        "voicemail.play",
                        Some(id.as_uuid()),
                        Outcome::Allowed,
                    )
                    .with_phi_fields(&["audio"]),
                    None => event(
                        access,
                        "voicemail.play",
                        Some(id.as_uuid()),
                        Outcome::NotFound,
                    ),
                };
                Ok((found, vec![played]))
            })
            .await?;
        let Some(r) = found else { return Ok(None) };
        let key = KeyVersions::new(&self.keys, ctx).get(r.key_version).await?;
        let sealed = r.audio.as_deref().ok_or_else(integrity)?;
        let audio = Sealer::new(&key, r.org_id, TABLE, r.id).open_bytes(AUDIO, sealed)?;
        Ok(Some(Phi::new(audio)))
    }
}
