use std::error::Error as StdError;

/// Errors of the tenancy crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TenancyError {
    /// An organization slug was malformed.
    #[error("slug must be 3-63 characters of a-z, 0-9 and '-', not starting or ending with '-'")]
    InvalidSlug,
    /// An organization name was empty or too long.
    #[error("name must be 1-200 characters without control characters")]
    InvalidName,
    /// A subject id was empty, too long or had control characters.
    #[error("subject must be 1-255 bytes without control characters")]
    InvalidSubject,
    /// The slug is already taken.
    #[error("an organization with this slug already exists")]
    SlugTaken,
    /// The storage behind a repository failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl TenancyError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidSlug => "invalid_slug",
            Self::InvalidName => "invalid_name",
            Self::InvalidSubject => "invalid_subject",
            Self::SlugTaken => "slug_taken",
            Self::Storage(e) => e.code(),
        }
    }
}

/// A failure of the storage behind a repository port. The cause is kept for
/// logs; it is never shown to a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The store could not be reached or timed out.
    #[error("storage unavailable")]
    Unavailable(#[source] Box<dyn StdError + Send + Sync>),
    /// A uniqueness or reference constraint refused the write.
    #[error("storage constraint violated")]
    Constraint(#[source] Box<dyn StdError + Send + Sync>),
    /// Anything else that went wrong in the store.
    #[error("storage failure")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

impl StorageError {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "storage_unavailable",
            Self::Constraint(_) => "storage_constraint",
            Self::Internal(_) => "storage_failure",
        }
    }
}
