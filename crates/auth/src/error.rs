/// Errors of authentication and authorization.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials were presented.
    #[error("authentication required")]
    MissingCredentials,
    /// Credentials were presented but are not valid (signature, issuer,
    /// audience, expiry, algorithm or claims). The reason is for logs only.
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// The token could not be checked right now: the identity provider's
    /// keys are unavailable (issuer unreachable, no usable cached keys) or
    /// the organization directory could not be read.
    #[error("authentication unavailable")]
    Unavailable,
    /// Login failed: unknown user, wrong password, locked or inactive
    /// account. Deliberately one variant.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// A new password breaks the password rules (the reason says which).
    #[error("password {0}")]
    WeakPassword(&'static str),
    /// No such user (or another organization's).
    #[error("not found")]
    NotFound,
    /// A request to the auth use cases broke a rule (the reason says which).
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// TOTP is already enabled for this account.
    #[error("MFA already enabled")]
    MfaAlreadyEnabled,
    /// An account with this e-mail exists in the organization.
    #[error("email already registered")]
    EmailTaken,
    /// The store behind an auth port failed.
    #[error(transparent)]
    Storage(#[from] carapace_tenancy::StorageError),
    /// The principal is authenticated but not allowed to do this.
    #[error("not allowed")]
    Forbidden,
    /// Allowed only to an MFA session: step up and retry.
    #[error("MFA required")]
    StepUpRequired,
    /// Too many failed sign-ins from this client address: wait this long.
    #[error("too many attempts")]
    TooManyAttempts(std::time::Duration),
}

impl AuthError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingCredentials => "missing_credentials",
            Self::InvalidToken(_) => "invalid_token",
            Self::Unavailable => "auth_unavailable",
            Self::InvalidCredentials => "invalid_credentials",
            Self::EmailTaken => "email_taken",
            Self::WeakPassword(_) => "weak_password",
            Self::MfaAlreadyEnabled => "mfa_already_enabled",
            Self::InvalidRequest(_) => "invalid_request",
            Self::NotFound => "not_found",
            Self::Storage(e) => e.code(),
            Self::Forbidden => "forbidden",
            Self::StepUpRequired => "mfa_required",
            Self::TooManyAttempts(_) => "rate_limited",
        }
    }
}
