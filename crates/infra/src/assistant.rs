//! The AI assistant's adapters: each user's conversation stored sealed
//! ([`SeaAssistant`]), a chat-completions provider compatible with OpenAI's
//! API reached only through the SSRF-safe client ([`OpenAiChat`]), and a
//! deterministic local provider for development and tests ([`LocalAi`]).

use std::sync::Arc;

use carapace_audit::{Access, Outcome};
use carapace_clinical::ClinicalError;
use carapace_clinical::assistant::{AiError, AiProvider, AssistantRepository, Speaker};
use carapace_clinical::patient::PatientId;
use carapace_phi_crypto::Phi;
use carapace_phi_crypto::envelope::DataKey;
use sea_orm::ActiveValue::Set;
use sea_orm::{
    ColumnTrait as _, EntityTrait as _, QueryFilter as _, QueryOrder as _, QuerySelect as _,
};
use secrecy::{ExposeSecret as _, SecretString};
use uuid::Uuid;

use crate::db::Database;
use crate::db::{Fetch as _, Run as _};
use crate::entity::assistant_turn as turn;
use crate::fields::{self, KeyVersions};
use crate::keys::KeyRing;
use crate::outbound::SafeHttp;
use crate::repo::Sealer;
use crate::scope::Live as _;

use crate::sealed::assistant_turns::{CONTENT, TABLE};

/// [`AssistantRepository`] over `assistant_turns`.
#[derive(Clone, Debug)]
pub struct SeaAssistant {
    db: Database,
    keys: Arc<KeyRing>,
}

impl SeaAssistant {
    /// Conversations in `db`, sealed with the organizations' keys.
    pub fn new(db: Database, keys: Arc<KeyRing>) -> Self {
        Self { db, keys }
    }
}

/// The turns of the conversation about `patient` (or about no patient).
fn conversation(patient: Option<PatientId>) -> sea_orm::sea_query::SimpleExpr {
    match patient {
        Some(p) => turn::Column::PatientId.eq(p.as_uuid()),
        None => turn::Column::PatientId.is_null(),
    }
}

impl AssistantRepository for SeaAssistant {
    async fn history(
        &self,
        access: &Access,
        patient: Option<PatientId>,
        limit: u64,
    ) -> Result<Vec<(Speaker, Phi<String>)>, ClinicalError> {
        let ctx = access.tenant();
        let tx = self.db.begin_tenant(ctx).await?;
        let mut rows = turn::Entity::find()
            .live(ctx)
            .filter(turn::Column::Subject.eq(ctx.actor().as_str()))
            .filter(conversation(patient))
            .order_by_desc(turn::Column::Id)
            .limit(limit)
            .all_in(&tx)
            .await?;
        rows.reverse();
        let read = access
            .event("assistant.history", "assistant", None, Outcome::Allowed)
            .with_detail(format!("{} turns", rows.len()));
        crate::audit::commit_with(tx, &[read]).await?;
        let open = |key: &DataKey, r: turn::Model| -> Result<_, ClinicalError> {
            let text = Sealer::new(key, r.org_id, TABLE, r.id).open(CONTENT, &r.content)?;
            let speaker =
                Speaker::parse(&r.speaker).ok_or(ClinicalError::Storage(fields::integrity()))?;
            Ok((speaker, Phi::new(text)))
        };
        KeyVersions::new(&self.keys, ctx)
            .open_each(rows, |r| r.key_version, open)
            .await
    }

    async fn append(
        &self,
        access: &Access,
        patient: Option<PatientId>,
        turns: &[(Speaker, Phi<String>)],
    ) -> Result<(), ClinicalError> {
        let ctx = access.tenant();
        let key = self.keys.current(ctx).await?;
        let org = ctx.org().as_uuid();
        let tx = self.db.begin_tenant(ctx).await?;
        for (speaker, text) in turns {
            let id = Uuid::now_v7();
            turn::Entity::insert(turn::ActiveModel {
                org_id: Set(org),
                id: Set(id),
                subject: Set(ctx.actor().as_str().to_owned()),
                speaker: Set(speaker.as_str().to_owned()),
                key_version: Set(i32::try_from(key.version()).unwrap_or(i32::MAX)),
                content: Set(Sealer::new(&key, org, TABLE, id).seal(CONTENT, text.expose_phi())?),
                created_at: Set(carapace_audit::event::now_micros()),
                patient_id: Set(patient.map(|p| p.as_uuid())),
            })
            .run(&tx)
            .await?;
        }
        let stored = access
            .event("assistant.message", "assistant", None, Outcome::Allowed)
            .with_detail(format!("{} turns", turns.len()));
        crate::audit::commit_with(tx, &[stored]).await?;
        Ok(())
    }
}

/// A deterministic provider for development and tests: it answers with
/// what it was sent last, so what leaves Carapace can be seen. Production
/// refuses it.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalAi;

impl AiProvider for LocalAi {
    fn name(&self) -> String {
        "local".to_owned()
    }

    async fn complete(
        &self,
        _system: &str,
        turns: &[(Speaker, String)],
    ) -> Result<String, AiError> {
        let last = turns.last().map(|(_, t)| t.as_str()).unwrap_or_default();
        Ok(format!("(local assistant) You wrote: {last}"))
    }
}

/// Where and how to reach an OpenAI-compatible chat-completions API.
#[derive(Clone)]
pub struct OpenAiSettings {
    /// Base URL (`https://api.openai.com`); `/v1/chat/completions` is added.
    pub base_url: String,
    /// API key (bearer).
    pub api_key: SecretString,
    /// Model name.
    pub model: String,
}

impl std::fmt::Debug for OpenAiSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiSettings")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .finish_non_exhaustive()
    }
}

/// The chat-completions adapter, through the SSRF-safe client.
#[derive(Clone, Debug)]
pub struct OpenAiChat {
    http: SafeHttp,
    settings: OpenAiSettings,
}

impl OpenAiChat {
    /// A provider at `settings` through `http`.
    pub fn new(http: SafeHttp, settings: OpenAiSettings) -> Self {
        Self { http, settings }
    }
}

impl AiProvider for OpenAiChat {
    fn name(&self) -> String {
        format!("openai-compatible:{}", self.settings.model)
    }

    async fn complete(&self, system: &str, turns: &[(Speaker, String)]) -> Result<String, AiError> {
        let mut messages = vec![serde_json::json!({"role": "system", "content": system})];
        messages.extend(
            turns
                .iter()
                .map(|(s, t)| serde_json::json!({"role": s.as_str(), "content": t})),
        );
        let body = serde_json::to_vec(&serde_json::json!({
            "model": self.settings.model,
            "messages": messages,
        }))
        .map_err(|e| AiError::Unavailable(e.to_string()))?;
        let url = format!(
            "{}/v1/chat/completions",
            self.settings.base_url.trim_end_matches('/')
        );
        let answer = self
            .http
            .post_json_read(
                &url,
                &[(
                    "authorization",
                    format!("Bearer {}", self.settings.api_key.expose_secret()),
                )],
                body,
            )
            .await
            .map_err(|e| AiError::Unavailable(e.to_string()))?;
        let parsed: serde_json::Value =
            serde_json::from_slice(&answer).map_err(|_| AiError::Unavailable("not JSON".into()))?;
        parsed["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| AiError::Unavailable("no message in the answer".into()))
    }
}

/// The configured provider.
#[derive(Clone, Debug)]
pub enum Ai {
    /// [`LocalAi`].
    Local(LocalAi),
    /// [`OpenAiChat`].
    OpenAi(OpenAiChat),
}

impl AiProvider for Ai {
    fn name(&self) -> String {
        match self {
            Self::Local(p) => p.name(),
            Self::OpenAi(p) => p.name(),
        }
    }

    async fn complete(&self, system: &str, turns: &[(Speaker, String)]) -> Result<String, AiError> {
        match self {
            Self::Local(p) => p.complete(system, turns).await,
            Self::OpenAi(p) => p.complete(system, turns).await,
        }
    }
}
