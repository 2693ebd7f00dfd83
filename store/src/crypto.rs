//! Encryption of provider secrets at rest.
//!
//! Guarantees: every seal uses XChaCha20-Poly1305 with a fresh random 24-byte
//! nonce; the caller's associated data binds a ciphertext to its row, so a
//! sealed value copied to another row (or tenant) fails to open. Failures are
//! reported as [`StoreError::Crypto`] with no detail, and neither keys nor
//! plaintexts are ever printed.

use crate::error::StoreError;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::fmt;

const NONCE_LEN: usize = 24;

/// Seals and opens secrets with the store's 32-byte key.
#[derive(Clone)]
pub struct SecretCipher {
    aead: XChaCha20Poly1305,
}

impl fmt::Debug for SecretCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretCipher([REDACTED])")
    }
}

impl SecretCipher {
    pub fn new(key: [u8; 32]) -> Self {
        Self {
            aead: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// Encrypt `plaintext` bound to `aad`; returns base64(nonce || ciphertext).
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Result<String, StoreError> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let ct = self
            .aead
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Crypto)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        Ok(B64.encode(out))
    }

    /// Decrypt a value produced by [`SecretCipher::seal`] with the same `aad`.
    pub fn open(&self, aad: &str, sealed: &str) -> Result<Vec<u8>, StoreError> {
        let raw = B64.decode(sealed).map_err(|_| StoreError::Crypto)?;
        if raw.len() < NONCE_LEN {
            return Err(StoreError::Crypto);
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        self.aead
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Crypto)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_uses_fresh_nonces() {
        let c = SecretCipher::new([7; 32]);
        let a = c.seal("row:1", b"hunter2").expect("seal");
        let b = c.seal("row:1", b"hunter2").expect("seal");
        assert_ne!(a, b, "nonces must differ per write");
        assert_eq!(c.open("row:1", &a).expect("open"), b"hunter2");
    }

    #[test]
    fn wrong_aad_key_or_tampering_fails() {
        let c = SecretCipher::new([7; 32]);
        let sealed = c.seal("row:1", b"hunter2").expect("seal");
        assert!(matches!(c.open("row:2", &sealed), Err(StoreError::Crypto)));
        assert!(matches!(
            SecretCipher::new([8; 32]).open("row:1", &sealed),
            Err(StoreError::Crypto)
        ));
        let mut raw = B64.decode(&sealed).expect("b64");
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(matches!(c.open("row:1", &B64.encode(raw)), Err(StoreError::Crypto)));
        assert!(matches!(c.open("row:1", "AAAA"), Err(StoreError::Crypto)));
        assert!(matches!(c.open("row:1", "not base64!"), Err(StoreError::Crypto)));
    }

    #[test]
    fn debug_does_not_print_the_key() {
        assert_eq!(format!("{:?}", SecretCipher::new([7; 32])), "SecretCipher([REDACTED])");
    }
}
