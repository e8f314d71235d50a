//! Local accounts: password rules and hashing, lockout and session
//! policies, the account and session ports, and the login, refresh and
//! logout use cases built only from those.

pub mod admin;
mod flow;
pub mod mfa;
mod password;
mod policy;
mod ports;
mod reset;

pub use flow::{IssuedTokens, LocalAuth, LoginOutcome, RefreshToken, TotpEnrolment};
pub use password::{check_new_password, hash_password, verify_password};
pub use policy::{LOCKOUT, LoginState, MAX_FAILURES, SessionLimits, session_alive};
pub use ports::{
    AccessClaims, AccessTokenIssuer, Account, AccountStore, Email, Rotation, SessionId,
    SessionStore, UserId,
};
pub use reset::{
    Mailer, OutgoingMail, PasswordReset, RESET_TTL, ResetStore, ResetToken, reset_mail,
};
