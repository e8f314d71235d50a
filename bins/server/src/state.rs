//! The application state shared by handlers: ports wired to adapters.

pub mod kill_switch;
pub mod origins;
pub mod verifications;
pub mod witness_gate;

use std::sync::Arc;

use carapace_auth::local::admin::UserAdmin;
use carapace_auth::local::{LocalAuth, PasswordReset};
use carapace_infra::accounts::{SeaAccounts, SeaResets, SeaSessions};
use carapace_infra::local_tokens::LocalTokens;
use carapace_infra::mail::LettreMailer;
use carapace_infra::service_keys::SeaServiceKeys;
use carapace_infra::tokens::Verifiers;
use carapace_infra::{
    Database, SeaAppointments, SeaCalendarFeeds, SeaConsultations, SeaMedications,
    SeaOrganizations, SeaPatients, SeaResearch, SeaVerifications,
};
use carapace_tenancy::cursor::CursorKey;

/// Calls `read` every `every` until the task is aborted; a failed read
/// keeps the last state and is logged as a warning, `failed`.
pub(crate) async fn reread<T, F>(
    every: std::time::Duration,
    failed: &'static str,
    read: impl Fn() -> F,
) where
    F: std::future::Future<Output = Result<T, carapace_tenancy::StorageError>>,
{
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = read().await {
            tracing::warn!(error = %e, "{failed}");
        }
    }
}

/// Local-account authentication as wired here.
pub type LocalAuthService = LocalAuth<SeaAccounts, SeaSessions, LocalTokens>;

/// User administration as wired here.
pub type UserAdminService = UserAdmin<SeaAccounts, SeaResets, LettreMailer>;

/// Password reset as wired here.
pub type PasswordResetService = PasswordReset<SeaAccounts, SeaResets, LettreMailer>;

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// The voice API and the public URL its callbacks come to.
#[derive(Clone, Debug)]
pub struct Voice {
    /// The provider's REST API (or the development provider).
    pub api: carapace_infra::voice::VoiceProvider,
    /// The server's public base URL, no trailing `/`.
    pub public_url: String,
}

/// The application state as a handler extracts it.
pub type State = actix_web::web::Data<AppState>;

/// Everything handlers need.
pub struct AppState {
    /// The database pool (health checks).
    pub db: Database,
    /// Patient storage.
    pub patients: SeaPatients,
    /// Appointment storage (and the reminder outbox).
    pub appointments: SeaAppointments,
    /// Calendar feeds.
    pub calendar: SeaCalendarFeeds,
    /// Medication statements and side effects.
    pub medications: SeaMedications,
    /// Consents and referrals.
    pub consultations: SeaConsultations,
    /// The AI provider, when one is configured.
    pub ai: Option<carapace_infra::assistant::Ai>,
    /// The deployment's declaration of a BAA with the AI provider.
    pub ai_baa_signed: bool,
    /// Assistant conversations.
    pub assistant: carapace_infra::assistant::SeaAssistant,
    /// De-identified research aggregates.
    pub research: SeaResearch,
    /// Prior-authorization verification tasks.
    pub verifications: SeaVerifications,
    /// Telephony accounts, calls and recordings.
    pub calls: carapace_infra::calls::SeaCalls,
    /// Voicemails.
    pub voicemails: carapace_infra::voicemail::SeaVoicemails,
    /// The voice API, when telephony is configured.
    pub voice: Option<Voice>,
    /// The server's public base URL (`CARAPACE_PUBLIC_URL`), no trailing
    /// `/`: FHIR's `fullUrl`s and links are built on it when set.
    pub public_url: Option<String>,
    /// The external OIDC issuer, when configured (the SMART configuration
    /// names it).
    pub oidc_issuer: Option<String>,
    /// FHIR bulk exports and their sealed files.
    pub exports: carapace_infra::exports::SeaExports,
    /// How long an export's files are kept.
    pub export_ttl: time::Duration,
    /// The speech provider, when one is configured.
    pub speech: Option<carapace_infra::speech::Speech>,
    /// Length limits and horizon of bookings.
    pub booking_rules: carapace_clinical::appointment::BookingRules,
    /// When reminders go out before an appointment.
    pub reminder_offsets: Vec<time::Duration>,
    /// The organization directory.
    pub orgs: SeaOrganizations,
    /// Bearer-token verification (dev, local and issuer tokens).
    pub authenticator: Verifiers,
    /// The key-encryption key's provider (a key file or KMS): it wraps
    /// every data key, so readiness round-trips it.
    pub key_provider: Arc<dyn carapace_phi_crypto::SecretSealer>,
    /// Local accounts, when enabled.
    pub local: Option<LocalAuthService>,
    /// Password reset, when local accounts are enabled.
    pub reset: Option<PasswordResetService>,
    /// User administration, when local accounts are enabled.
    pub user_admin: Option<UserAdminService>,
    /// Base domain of per-organization hosts, lower-case.
    pub base_domain: Option<String>,
    /// Where security events go (the persisted audit log).
    pub events: std::sync::Arc<dyn carapace_audit::SecurityEventSink>,
    /// The audit log: events outside a data transaction, and reading.
    pub audit: carapace_infra::audit::SeaAuditLog,
    /// The key that verifies the audit chain's signed checkpoints.
    pub audit_key: ed25519_dalek::VerifyingKey,
    /// Chain verifications running (each reads an organization's whole
    /// chain): one per organization, a few per instance.
    pub verifying: Arc<verifications::Verifications>,
    /// Rate-limit counters (per principal, or per address on the
    /// authentication routes).
    pub limiter: Arc<carapace_infra::rate_limit::Limiter>,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// SHA-256 of the token `GET /metrics` requires; none: no metrics.
    pub metrics_token: Option<[u8; 32]>,
    /// Requests slower than this are logged as warnings.
    pub slow_request: std::time::Duration,
    /// The kill switch as this instance last read it.
    pub kill_switch: Arc<kill_switch::KillSwitchWatch>,
    /// The audit witness's backlog against its bound, when a witness is
    /// configured: closes PHI routes while it is over.
    pub witness: Option<Arc<witness_gate::WitnessGate>>,
    /// The organization whose administrators operate the deployment (the
    /// kill switch API); none: only the CLI may.
    pub operator_org: Option<carapace_tenancy::OrgSlug>,
    /// The origins whose pages may make unsafe cookie-session requests.
    pub trusted_origins: origins::TrustedOrigins,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: carapace_auth::rate_limit::TrustedProxies,
    /// Service keys.
    pub service_keys: SeaServiceKeys,
    /// Seals pagination cursors to the caller's org.
    pub cursor_key: CursorKey,
    /// `Idempotency-Key` records of creating requests.
    pub idempotency: carapace_infra::idempotency::SeaIdempotency,
}
