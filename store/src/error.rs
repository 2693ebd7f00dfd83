//! The store's error type and the mapping from database errors to it.
//!
//! Guarantees: unique-constraint violations become [`StoreError::Conflict`],
//! foreign-key and check violations become [`StoreError::Invalid`], and no
//! variant ever carries secret material (crypto failures carry no detail).

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The row does not exist, or belongs to a tenant outside the caller's scope.
    #[error("{entity} not found")]
    NotFound { entity: &'static str },
    /// A unique value is taken, or the change would double-book a slot.
    #[error("conflict: {message}")]
    Conflict { message: String },
    /// The input refers to rows it may not use, or breaks an invariant.
    #[error("invalid input: {message}")]
    Invalid { message: String },
    /// Sealing or opening stored secrets failed (wrong key, tampered or moved ciphertext).
    #[error("stored secrets could not be decrypted")]
    Crypto,
    /// Password hashing failed or was interrupted (no detail: it may involve the password).
    #[error("password hashing failed")]
    Hashing,
    /// A stored row does not parse into the domain types.
    #[error("corrupt row: {message}")]
    Corrupt { message: String },
    /// Running the schema migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Preparing the database location failed (e.g. creating the SQLite directory).
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// Any other database error (connectivity, timeouts, ...).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    pub(crate) fn not_found(entity: &'static str) -> Self {
        StoreError::NotFound { entity }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        StoreError::Invalid {
            message: message.into(),
        }
    }

    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        StoreError::Conflict {
            message: message.into(),
        }
    }

    pub(crate) fn corrupt(message: impl Into<String>) -> Self {
        StoreError::Corrupt {
            message: message.into(),
        }
    }

    /// Classify an error from a write: constraint violations become
    /// `Conflict`/`Invalid` with the caller's wording, everything else stays a
    /// database error.
    pub(crate) fn from_write(err: sqlx::Error, conflict: &str) -> Self {
        if let sqlx::Error::Database(db) = &err {
            if db.is_unique_violation() {
                return StoreError::conflict(conflict);
            }
            if db.is_foreign_key_violation() {
                return StoreError::invalid("a referenced row does not exist");
            }
            if db.is_check_violation() {
                return StoreError::invalid("the values break a table constraint");
            }
        }
        StoreError::Database(err)
    }
}
