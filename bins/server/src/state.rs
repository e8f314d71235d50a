//! The application state shared by handlers: ports wired to adapters.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use carapace_auth::local::admin::UserAdmin;
use carapace_auth::local::{LocalAuth, PasswordReset};
use carapace_infra::accounts::{SeaAccounts, SeaResets, SeaSessions};
use carapace_infra::local_tokens::LocalTokens;
use carapace_infra::mail::LettreMailer;
use carapace_infra::service_keys::SeaServiceKeys;
use carapace_infra::tokens::Verifiers;
use carapace_infra::{Database, SeaOrganizations, SeaPatients};
use carapace_tenancy::cursor::CursorKey;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// Local-account authentication as wired here.
pub type LocalAuthService = LocalAuth<SeaAccounts, SeaSessions, LocalTokens>;

/// User administration as wired here.
pub type UserAdminService = UserAdmin<SeaAccounts, SeaResets, LettreMailer>;

/// Password reset as wired here.
pub type PasswordResetService = PasswordReset<SeaAccounts, SeaResets, LettreMailer>;

/// Login attempts allowed per client address per minute (on top of the
/// per-account lockout).
pub const LOGIN_ATTEMPTS_PER_MINUTE: u32 = 30;

/// A per-IP limit on login attempts.
#[derive(Debug)]
pub struct LoginLimiter(DefaultKeyedRateLimiter<IpAddr>);

impl LoginLimiter {
    /// At most `per_minute` attempts per address per minute.
    pub fn new(per_minute: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN));
        Self(RateLimiter::keyed(quota))
    }

    /// `Err(wait)` when `ip` is over its limit.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        if self.0.len() > 100_000 {
            self.0.retain_recent();
        }
        self.0
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// Everything handlers need.
pub struct AppState {
    /// The database pool (health checks).
    pub db: Database,
    /// Patient storage.
    pub patients: SeaPatients,
    /// The organization directory.
    pub orgs: SeaOrganizations,
    /// Bearer-token verification (dev, local and issuer tokens).
    pub authenticator: Verifiers,
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
    /// Per-IP limit on login and reset requests.
    pub login_limiter: LoginLimiter,
    /// Service keys.
    pub service_keys: SeaServiceKeys,
    /// Seals pagination cursors to the caller's org.
    pub cursor_key: CursorKey,
}
