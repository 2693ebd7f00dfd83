//! Password hashing with Argon2id.
//!
//! Guarantees: hashes are PHC strings with a random salt and the `argon2`
//! crate's default Argon2id parameters; verification of a missing user costs
//! the same as a real one (see [`verify_dummy`]) so timing does not reveal
//! which emails exist. Hashing runs on the blocking pool because it takes
//! tens of milliseconds of CPU.

use crate::error::StoreError;
use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::sync::LazyLock;

/// Hash `password` into a PHC string.
pub fn hash(password: &str) -> Result<String, StoreError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| StoreError::Hashing)
}

/// True when `password` matches the PHC string `phc`. An unparseable stored
/// hash is `Corrupt`, not a mismatch, so it is noticed.
pub fn verify(password: &str, phc: &str) -> Result<bool, StoreError> {
    let parsed = PasswordHash::new(phc).map_err(|_| StoreError::corrupt("stored password hash is malformed"))?;
    Ok(Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok())
}

/// Spend the same work as [`verify`] against a throwaway hash.
pub fn verify_dummy(password: &str) {
    static DUMMY: LazyLock<Option<String>> = LazyLock::new(|| hash("switchboard-dummy-password").ok());
    if let Some(phc) = DUMMY.as_deref() {
        let _ = verify(password, phc);
    }
}

/// Run a hashing closure on the blocking pool.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|_| StoreError::Hashing)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_salted_argon2id_and_verify() {
        let a = hash("correct horse").expect("hash");
        let b = hash("correct horse").expect("hash");
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b);
        assert!(verify("correct horse", &a).expect("verify"));
        assert!(!verify("wrong", &a).expect("verify"));
    }

    #[test]
    fn malformed_hash_is_corrupt() {
        assert!(matches!(verify("x", "nope"), Err(StoreError::Corrupt { .. })));
    }
}
